"""Answer extraction and normalisation on hand-written predictions."""

from __future__ import annotations

import pytest

from daar.evaluate import metrics


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  a   Cat, an apple ", "cat apple"),
        ('"Girl with kaleidoscope eyes"', "girl with kaleidoscope eyes"),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert metrics.normalize_answer(text) == expected


def test_qa_exact_match_any_alias_and_first_line() -> None:
    aliases = ["14 December 1972 UTC", "December 1972"]
    assert metrics.qa_exact_match(" December 1972\nQuestion: next", aliases)
    assert metrics.qa_exact_match("Answer: december 1972.", aliases)
    assert not metrics.qa_exact_match(" 1972", aliases)
    assert not metrics.qa_exact_match("", aliases)
    assert not metrics.qa_exact_match("\n\n", aliases)


def test_first_readable_skips_emoji() -> None:
    assert metrics.first_readable(["🚁", "Helicopters"]) == "Helicopters"
    assert metrics.first_readable(["Paris"]) == "Paris"


@pytest.mark.parametrize(
    ("generation", "value"),
    [
        ("She makes 9 * 2 = $18 every day.\n#### 18", 18.0),
        ("So the total is 1,234 dollars.", 1234.0),
        ("The answer is -3.", -3.0),
        ("It costs 3.50 in total", 3.5),
        ("first 5 then 7 then finally 12.", 12.0),
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_last_number(generation: str, value: float | None) -> None:
    assert metrics.extract_last_number(generation) == value


def test_gsm8k_correct() -> None:
    assert metrics.gsm8k_correct("Janet makes 18 dollars.", 18)
    assert metrics.gsm8k_correct("#### 1,000", 1000)
    assert not metrics.gsm8k_correct("Janet makes 19 dollars.", 18)
    assert not metrics.gsm8k_correct("I do not know", 18)


@pytest.mark.parametrize(
    ("text", "boxed"),
    [
        ("so $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{x^{2}+1}", "x^{2}+1"),
        ("\\boxed 5", "5"),
        ("\\boxed{unclosed", None),
        ("nothing", None),
    ],
)
def test_last_boxed(text: str, boxed: str | None) -> None:
    assert metrics.last_boxed(text) == boxed


@pytest.mark.parametrize(
    ("prediction", "target"),
    [
        ("\\dfrac12", "\\frac{1}{2}"),
        ("0.5", "\\frac{1}{2}"),
        ("\\left( 3, 4 \\right)", "(3,4)"),
        ("$5.0$", "5"),
        ("x = 7", "7"),
        ("10^\\circ", "10"),
        ("1,000", "1000"),
        ("\\text{(B)}", "(B)"),
        ("2\\sqrt2", "2\\sqrt{2}"),
    ],
)
def test_math_equal_normalises(prediction: str, target: str) -> None:
    assert metrics.math_equal(prediction, target)


def test_math_correct_right_wrong_malformed() -> None:
    assert metrics.math_correct("Thus the answer is $\\boxed{\\frac{3}{4}}$.", "\\frac34")
    assert metrics.math_correct("The final answer is $12$.", "12")
    assert not metrics.math_correct("\\boxed{13}", "12")
    assert not metrics.math_correct("\\boxed{12", "12")
    assert not metrics.math_correct("", "12")


def test_extract_code() -> None:
    assert metrics.extract_code("```python\ndef f():\n    return 1\n```\nmore") == "def f():\n    return 1\n"
    assert metrics.extract_code("[BEGIN]\ndef f(): pass\n[DONE] junk") == "\ndef f(): pass\n"
    assert metrics.extract_code("def g(): pass") == "def g(): pass"


def test_humaneval_program_accepts_whole_function() -> None:
    row = {
        "prompt": 'from typing import List\n\ndef add(a: int, b: int) -> int:\n    """Add."""\n',
        "entry_point": "add",
        "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n",
    }
    body_only = metrics.humaneval_program("    return a + b\n", row)
    assert body_only.startswith(row["prompt"]) and body_only.endswith("check(add)\n")
    whole = metrics.humaneval_program("```python\ndef add(a, b):\n    return a + b\n```", row)
    assert "from typing import List" in whole and whole.count("def add(") == 1


def test_code_checks_keep_the_tests_apart_from_the_code() -> None:
    """The evaluator runs the tests in their own namespace (docs/SANDBOX.md): HumanEval's take only
    the entry point from the code and run the prompt's head (imports, helpers) again themselves."""
    row = {
        "prompt": 'import math\n\ndef helper(x):\n    return x\n\ndef add(a: int, b: int) -> int:\n    """Add."""\n',
        "entry_point": "add",
        "test": "def check(candidate):\n    assert candidate(1, 2) == helper(3)\n",
    }
    check = metrics.humaneval_check("    return a + b\n", row)
    assert check.code == row["prompt"] + "    return a + b\n" and check.shared == ("add",)
    assert check.tests.startswith("import math\n\ndef helper(x):") and check.tests.endswith("check(add)\n")
    assert "def add(" not in check.tests
    mbpp = metrics.mbpp_check("def f():\r\n    return 1\r\n", {"test_list": ["assert f() == 1"], "test_setup_code": ""})
    assert (mbpp.code, mbpp.tests, mbpp.shared) == ("def f():\n    return 1\n", "\nassert f() == 1\n", None)
    assert metrics.mbpp_program("x = 1", {"test_list": ["assert x"]}) == "x = 1\n\n\nassert x\n"
