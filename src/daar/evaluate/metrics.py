"""Answer extraction and normalisation for the generation benchmarks.

Kept free of model and harness code so each rule can be tested on hand-written predictions.
Every function takes raw model text and never raises on malformed input: a prediction that
cannot be read is simply wrong.
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD/TriviaQA normalisation: lower-case, drop punctuation and articles, collapse whitespace.

    Articles are removed after punctuation so that "The" and "the," both vanish.
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def qa_prediction(generation: str) -> str:
    """The answer part of a short-answer generation: its first non-empty line, with a leading
    "Answer:" removed (models sometimes repeat the cue)."""
    for line in generation.strip().splitlines():
        line = line.strip()
        if line:
            return re.sub(r"^(answer|a)\s*:\s*", "", line, flags=re.IGNORECASE)
    return ""


def qa_exact_match(generation: str, answers: list[str]) -> bool:
    """True when the normalised prediction equals the normalised form of any accepted alias."""
    prediction = normalize_answer(qa_prediction(generation))
    if not prediction:
        return False
    return any(prediction == normalize_answer(a) for a in answers)


def first_readable(answers: list[str]) -> str:
    """The first alias with a letter or digit (TriviaQA's first alias is sometimes an emoji)."""
    for answer in answers:
        if any(ch.isalnum() for ch in answer):
            return answer
    return answers[0] if answers else ""


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def extract_last_number(generation: str) -> float | None:
    """GSM8K answer: the last number in the text (after the last '####' if the model wrote one).

    Thousands commas are removed ("1,234" -> 1234), a trailing full stop is not part of the
    number ("18." -> 18), and a leading minus is kept. None when the text has no number.
    """
    text = generation.rsplit("####", 1)[1] if "####" in generation else generation
    matches = _NUMBER.findall(text)
    if not matches:
        return None
    try:
        return float(matches[-1].replace(",", ""))
    except ValueError:
        return None


def gsm8k_correct(generation: str, target: int | float | str) -> bool:
    """True when the extracted number equals `target` (an int in our data) to 1e-6."""
    value = extract_last_number(generation)
    if value is None:
        return False
    try:
        return abs(value - float(str(target).replace(",", ""))) < 1e-6
    except ValueError:
        return False


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) with nested braces matched; None if absent.

    `\\boxed 5` (no braces) yields "5". An unclosed brace yields None.
    """
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    rest = text[start:]
    rest = rest[len("\\boxed") :] if rest.startswith("\\boxed") else rest[len("\\fbox") :]
    if rest.startswith(" "):
        token = rest.strip().split("$")[0].split()
        return token[0] if token else None
    if not rest.startswith("{"):
        return None
    depth = 0
    for i, ch in enumerate(rest):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return rest[1:i]
    return None


_FINAL = re.compile(r"(?:final answer|the answer)\s*(?:is|:)\s*(.+)", re.IGNORECASE)


def extract_math_answer(generation: str) -> str | None:
    """MATH answer: the last \\boxed{...}; else the text after the last "final answer is"/"the answer
    is" up to the end of its line (a closing full stop and surrounding $ removed); else None."""
    boxed = last_boxed(generation)
    if boxed is not None:
        return boxed
    found = _FINAL.findall(generation)
    if not found:
        return None
    answer = found[-1].strip().splitlines()[0].strip()
    answer = answer.rstrip(".").strip()
    if answer.startswith("$") and answer.count("$") >= 2:
        answer = answer[1 : answer.index("$", 1)]
    return answer or None


_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")


def normalize_math(answer: str) -> str:
    """Canonical string for a MATH answer, so equal answers written differently compare equal.

    Steps: drop `$`, `\\left`/`\\right`, LaTeX spacing (`\\!`, `\\,`, `\\;`, `\\ `), degree signs and
    `\\%`; unwrap `\\text{...}`; `\\dfrac`/`\\tfrac` -> `\\frac`; `\\frac12` -> `\\frac{1}{2}` and
    `\\sqrt2` -> `\\sqrt{2}`; remove all whitespace and a trailing full stop; drop a leading
    single-letter assignment (`x=5` -> `5`); thousands commas in plain integers ("1,000"); a
    trailing `.0`/`.00` ("5.0" -> "5") and a leading `0.` written as `.`.
    """
    s = answer.strip()
    s = s.replace("$", "")
    s = s.replace("\\left", "").replace("\\right", "")
    for space in ("\\!", "\\,", "\\;", "\\:", "\\ "):
        s = s.replace(space, "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\circ", "")
    s = s.replace("\\%", "").replace("%", "")
    s = _TEXT.sub(r"\1", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt(\d+)", r"\\sqrt{\1}", s)
    s = "".join(s.split())
    s = s.rstrip(".")
    s = re.sub(r"^[a-zA-Z]=", "", s)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+", s):
        s = s.replace(",", "")
    s = re.sub(r"^(-?\d+)\.0+$", r"\1", s)
    s = re.sub(r"^(-?)0\.", r"\1.", s)
    return s


def _as_number(s: str) -> float | None:
    """A number for plain decimals, `a/b` and `\\frac{a}{b}` with numeric a and b, else None."""
    try:
        return float(s)
    except ValueError:
        pass
    match = re.fullmatch(r"(-?)\\frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}", s) or re.fullmatch(r"(-?)([\d.]+)/([\d.]+)", s)
    if match:
        try:
            value = float(match.group(2)) / float(match.group(3))
        except (ValueError, ZeroDivisionError):
            return None
        return -value if match.group(1) else value
    return None


def math_equal(prediction: str | None, target: str) -> bool:
    """True when both normalise to the same string, or both read as numbers equal to 1e-6."""
    if prediction is None:
        return False
    left, right = normalize_math(prediction), normalize_math(target)
    if not left:
        return False
    if left == right:
        return True
    a, b = _as_number(left), _as_number(right)
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)


def math_correct(generation: str, target: str) -> bool:
    """MATH score of one generation: extract (see `extract_math_answer`) and compare."""
    return math_equal(extract_math_answer(generation), target)


_FENCE = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL)


def extract_code(generation: str) -> str:
    """Code from a generation: the first fenced block if there is one, else the text up to a
    `[DONE]` marker, with a leading `[BEGIN]` removed."""
    fenced = _FENCE.search(generation)
    if fenced:
        return fenced.group(1)
    text = generation.split("[DONE]")[0]
    return text.replace("[BEGIN]", "", 1) if text.lstrip().startswith("[BEGIN]") else text


@dataclass(frozen=True)
class CodeCheck:
    """A candidate's code and the benchmark's tests, which the sandbox runs in a namespace of their
    own after the code (`daar.evaluate.sandbox.run_python(code, tests=..., shared=...)`), so the code
    cannot change what the tests call. `shared`: the names the tests take from the code's namespace
    (None: every name they read)."""

    code: str
    tests: str
    shared: tuple[str, ...] | None = None

    @property
    def program(self) -> str:
        """Code and tests as one program, for reading (run that way, the code could reach the tests)."""
        return f"{self.code.rstrip(chr(10))}\n\n{self.tests}"


def mbpp_check(code: str, row: dict) -> CodeCheck:
    """An MBPP item: the candidate code; tests are the setup code and the 3 asserts, which read the
    function (and any class, MBPP/367's `Node`) from the code's namespace."""
    tests = "\n".join([row.get("test_setup_code") or "", *row["test_list"]]) + "\n"
    return CodeCheck(code.replace("\r\n", "\n"), tests)


def mbpp_program(code: str, row: dict) -> str:
    """The program that decides an MBPP item: candidate code, the setup code, then the 3 asserts."""
    return mbpp_check(code, row).program


def _defines(code: str, name: str) -> re.Match[str] | None:
    """A top-level `def name(`: an indented one belongs to a function body, not a whole function."""
    return re.search(rf"^(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\(", code, re.MULTILINE)


def humaneval_check(completion: str, row: dict) -> CodeCheck:
    """A HumanEval item.

    Normally the completion continues the prompt (the function body). If the model instead wrote
    the whole function (it defines the entry point itself), its code follows everything the prompt
    has before the entry point's `def`: imports and the helper functions some prompts define
    (HumanEval/10 `is_palindrome`, /38 `encode_cyclic`, /50 `encode_shift`), which both the model's
    code and the benchmark's `check` may call. The tests run that head of the prompt again, then
    `check` on the entry point, the one name they take from the code.
    """
    code = extract_code(completion) if "```" in completion else completion
    entry = row["entry_point"]
    found = _defines(row["prompt"], entry)
    if found:
        head = row["prompt"][: found.start()]
    else:
        head = "\n".join(ln for ln in row["prompt"].splitlines() if ln.startswith(("import ", "from ")))
    if _defines(code, entry):
        body = head.rstrip("\n") + "\n\n" + code if head.strip() else code
    else:
        body = row["prompt"] + code
    tests = f"{head.rstrip(chr(10))}\n\n{row['test']}\n\ncheck({entry})\n"
    return CodeCheck(body, tests, (entry,))


def humaneval_program(completion: str, row: dict) -> str:
    """The program that decides a HumanEval item, as one text (see `humaneval_check`)."""
    return humaneval_check(completion, row).program
