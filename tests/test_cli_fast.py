"""The command line answers at once: help, version, list and info import no PyTorch; the model table is current."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cnnzoo import catalog
from cnnzoo.cli import build_parser, main, subcommands
from cnnzoo.cli.examples import EXAMPLES

# Prints whether torch or torchvision was imported after running the CLI with the given arguments.
PROBE = ("import sys; from cnnzoo.cli import main\n"
         "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
         "print('IMPORTED', sorted(m for m in ('torch', 'torchvision') if m in sys.modules), file=sys.stderr)")


def _imported(*argv: str) -> list[str]:
    r = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("IMPORTED")][-1]
    return eval(line.split(" ", 1)[1])  # a list literal printed by PROBE


COMMANDS = sorted(words for words, _ in subcommands(build_parser()))


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["list"], ["list", "vgg*", "--json"],
                                  ["info", "resnet50", "--brief"], ["list", "--help"], ["train", "--help"],
                                  ["completion", "bash"]])
def test_no_torch_import(argv):
    assert _imported(*argv) == []


def test_every_command_help_without_torch():
    """One process runs every command's --help (each would exit): none of them imports torch."""
    code = ("import sys; from cnnzoo.cli import main\n"
            f"for words in {COMMANDS!r}:\n"
            "    try:\n        main(words.split() + ['--help'])\n    except SystemExit:\n        pass\n"
            "print('IMPORTED', 'torch' in sys.modules, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "IMPORTED False" in r.stderr, r.stderr[-2000:]


def test_import_cli_has_no_torch_in_importtime():
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", "import cnnzoo.cli"], capture_output=True,
                       text=True, timeout=120)
    modules = [line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if "|" in line]
    assert "cnnzoo.cli" in modules
    assert not [m for m in modules if m.split(".")[0] in ("torch", "torchvision")]


@pytest.mark.parametrize("words", COMMANDS)
def test_every_command_help_ends_with_examples(words, capsys):
    with pytest.raises(SystemExit) as exc:
        main(words.split() + ["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert words in EXAMPLES, f"add 2-3 examples for `cnnzoo {words}` to cnnzoo/cli/examples.py"
    assert 2 <= len(EXAMPLES[words]) or words in ("weights",)
    tail = out[out.rindex("examples:"):]
    assert all(example in tail for example in EXAMPLES[words])


def test_examples_name_real_commands():
    assert set(EXAMPLES) <= set(COMMANDS)
    for words, lines in EXAMPLES.items():
        assert all(line.startswith(f"cnnzoo {words.split()[0]}") for line in lines), words


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    from cnnzoo import __version__

    assert capsys.readouterr().out.strip() == f"cnnzoo {__version__}"


def test_catalog_matches_the_models():
    """The shipped table equals what the real models give (cards, params, MACs): rerun scripts/make_catalog.py."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
    try:
        import make_catalog
    finally:
        sys.path.pop(0)
    from cnnzoo.models import list_models

    fresh = json.loads(make_catalog.render())
    assert [e["name"] for e in fresh] == list_models()
    assert fresh == json.loads(catalog.PATH.read_text()), "catalog.json is stale: run scripts/make_catalog.py"


def test_list_table_filters_and_sorts(capsys):
    assert main(["list", "--family", "mobilenet v1", "--sort", "params"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [ln.split()[0] for ln in lines[1:]]
    assert names == ["mobilenet_v1_025", "mobilenet_v1_050", "mobilenet_v1_075", "mobilenet_v1"]
    assert lines[0].split()[:4] == ["model", "family", "year", "params"]
    assert main(["list", "resnet5*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == {"resnet50", "resnet50_v1"}
    assert rows[0]["params"] == 25_557_032 and rows[0]["macs"] > 4e9


def test_list_and_info_errors(capsys):
    assert main(["list", "nosuch*"]) == 2
    assert "no model matches" in capsys.readouterr().err
    assert main(["info", "resnet5"]) == 2
    assert "did you mean: resnet50" in capsys.readouterr().err


def test_info_card_from_data_then_structure(capsys):
    assert main(["info", "alexnet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("alexnet  (AlexNet)") and "61,100,840 parameters" in out
    assert "8 weight layers" in out and "Conv2d(3, 64, kernel_size=(11, 11)" in out


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script(shell, capsys):
    assert main(["completion", shell]) == 0
    assert "cnnzoo" in capsys.readouterr().out


def test_completion_offers_model_names():
    """What the shell gets when the user types `cnnzoo info resnet5<TAB>` (argcomplete's protocol)."""
    line = "cnnzoo info resnet5"
    env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
           "_ARGCOMPLETE_IFS": "\n"}
    code = "import sys; from cnnzoo.cli import main; sys.exit(main())"
    # argcomplete answers on file descriptor 8, as the shell scripts of `cnnzoo completion` arrange it
    r = subprocess.run(["sh", "-c", '"$0" -c "$1" 8>&1 9>&2 1>/dev/null', sys.executable, code], env=env,
                       capture_output=True, text=True, timeout=60)
    assert set(r.stdout.split()) == {"resnet50", "resnet50_v1"}, (r.stdout, r.stderr[-500:])
