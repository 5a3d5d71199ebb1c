import subprocess
import sys

from simtune.cli import COMMANDS, main


def test_help_lists_commands_without_importing_torch():
    code = "import sys; from simtune.cli import main; main(['--help']); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "model info" in out and out.strip().endswith("False")


def test_unknown_command(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_every_command_target_resolves():
    import importlib
    for words, target, _ in COMMANDS:
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), words


def test_config_error_is_one_clear_line(capsys, tmp_path):
    assert main(["model", "convert", str(tmp_path / "nope.bin")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "nope.bin" in err and "Traceback" not in err


def test_every_command_answers_help(capsys):
    for words, _, _ in COMMANDS:
        try:
            rc = main([*words, "--help"])
        except SystemExit as e:  # argparse-based commands exit after printing help
            rc = e.code
        out = capsys.readouterr().out
        assert rc in (0, None) and "usage" in out.lower(), (words, rc, out[:200])


def test_help_names_types_as_a_user_reads_them(capsys):
    from typing import Optional, Union

    from simtune.config_paths import type_for_help
    assert type_for_help(Optional[str], "train_file") == "path, optional"
    assert type_for_help(Optional[int], "max_samples") == "int, optional"
    assert type_for_help(list[str], "report_to") == "list of str"
    assert type_for_help(Union[str, int], "x") == "str or int" and type_for_help(float | None) == "float, optional"
    main(["train", "sft", "--help"])
    out = capsys.readouterr().out
    assert "--train_file path, optional = None" in out and "Optional" not in out and "Union" not in out


def test_test_files_have_unique_names():
    """pytest's default import mode cannot collect two test modules with one basename."""
    from collections import Counter
    from pathlib import Path
    names = Counter(p.name for p in Path(__file__).parent.rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []
