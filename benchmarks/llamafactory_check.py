"""LLaMA-Factory reads a daar run folder's dataset_info.json and prepares its SFT examples.

Not part of `make test`: LLaMA-Factory pins transformers 4.x and torch builds of its own, so it goes
into a throwaway venv that sees daar's packages but installs nothing into them. Its data module
(parser, file loader, alpaca/sharegpt converter, template, tokenisation) is what runs here; its
model module does not import under transformers 5, so the tokenizer comes from transformers:

    python3.11 -m venv /tmp/venv-lf
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/venv-lf/lib/python3.11/site-packages/daar-venv.pth
    /tmp/venv-lf/bin/pip install --no-deps llamafactory==0.9.3 trl omegaconf fire tyro sentencepiece tiktoken einops
    DISABLE_VERSION_CHECK=1 /tmp/venv-lf/bin/python benchmarks/llamafactory_check.py runs/mine MODEL_FOLDER

It prints how many training examples LLaMA-Factory made from the entry `daar_selected` and the
first one's prompt and trained-on text.
"""

from __future__ import annotations

import argparse
import tempfile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a daar run folder (dataset_info.json, selected.jsonl)")
    parser.add_argument("model", help="a model folder whose tokenizer LLaMA-Factory uses")
    parser.add_argument("--template", default="default", help="LLaMA-Factory chat template name")
    args = parser.parse_args()

    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import AutoTokenizer, Seq2SeqTrainingArguments

    model_args = ModelArguments(model_name_or_path=args.model)
    data_args = DataArguments(
        dataset_dir=args.run, dataset="daar_selected", template=args.template, cutoff_len=256, overwrite_cache=True
    )
    training = Seq2SeqTrainingArguments(output_dir=tempfile.mkdtemp(), do_train=True, report_to="none")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    module = get_dataset(template, model_args, data_args, training, stage="sft", tokenizer=tokenizer, processor=None)
    train = module["train_dataset"]
    print(f"LLaMA-Factory prepared {len(train)} training examples from {args.run}/dataset_info.json")
    first = train[0]
    prompt = [t for t, label in zip(first["input_ids"], first["labels"], strict=True) if label == -100]
    print("example 0, prompt:", repr(tokenizer.decode(prompt)[:160]))
    print("example 0, trained on:", repr(tokenizer.decode([t for t in first["labels"] if t != -100])[:160]))


if __name__ == "__main__":
    main()
