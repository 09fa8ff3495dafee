"""A user error is one message and exit code 2 whatever the shell: ``HYDRA_FULL_ERROR=1`` only adds the traceback."""

import pytest

from facediag.core.errors import EXIT_CODE, DataNotFoundError, exit_on_user_error


@exit_on_user_error
def tool() -> None:
    raise DataNotFoundError("photos not found: /nowhere")


@pytest.mark.parametrize("full_error", [None, "1"])
def test_a_user_error_exits_2_with_its_message_with_or_without_hydra_full_error(full_error, monkeypatch, capsys):
    if full_error:
        monkeypatch.setenv("HYDRA_FULL_ERROR", full_error)
    else:
        monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as exited:
        tool()
    assert exited.value.code == EXIT_CODE == 2
    stderr = capsys.readouterr().err
    assert stderr.rstrip().endswith("error: photos not found: /nowhere")
    assert ("Traceback" in stderr) == bool(full_error)


def test_any_other_exception_propagates_with_its_traceback():
    @exit_on_user_error
    def broken() -> None:
        raise KeyError("a bug, not the user's")

    with pytest.raises(KeyError, match="a bug"):
        broken()
