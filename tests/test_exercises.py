"""The exercise checks the notebooks call."""

from dmt_core.exercises import check


def test_check_says_right_wrong_and_not_yet(capsys):
    assert check("1", 3, 3)
    assert not check("2", 0.50, 0.56, tol=0.05)
    assert check("3", 0.53, 0.56, tol=0.05)
    assert not check("4", None, 7)
    assert check("5", [1, 2.001], (1, 2.0), tol=0.01)
    assert not check("6", True, 1)  # a bool is not a count
    assert not check("7", {"a": 1}, {"b": 1})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "1: correct (3)"
    assert out[1].startswith("2: not quite: you gave 0.5, the solution finds 0.56")
    assert "no answer yet" in out[3] and "7" not in out[3].split(":", 1)[1]  # not revealed
