import pytest

import cnnzoo
from cnnzoo.cli import main


def test_list_models_wildcards():
    assert cnnzoo.list_models("vgg1?_bn") == ["vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
    assert "resnet50" in cnnzoo.list_models("resnet*")
    assert cnnzoo.list_models("no-such-*") == []
    assert cnnzoo.list_models() == sorted(cnnzoo.list_models())


def test_unknown_name_suggests_closest():
    with pytest.raises(cnnzoo.UnknownModelError, match="resnet50") as info:
        cnnzoo.create_model("resnet05")
    assert "did you mean" in str(info.value)
    with pytest.raises(KeyError):  # also a KeyError, for code that catches that
        cnnzoo.get_card("vgg17")


@pytest.mark.parametrize("kwargs", [{"num_classes": -1}, {"num_classes": 2.5}, {"in_chans": 0}])
def test_bad_arguments_are_user_errors(kwargs):
    with pytest.raises(cnnzoo.CnnzooError):
        cnnzoo.create_model("resnet18", **kwargs)


def test_unexpected_keyword_is_a_user_error():
    with pytest.raises(cnnzoo.CnnzooError, match="resnet18"):
        cnnzoo.create_model("resnet18", no_such_option=True)


def test_cli_list_and_info(capsys):
    assert main(["list", "vgg16*"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:]] == ["vgg16", "vgg16_bn", "vgg16_c"]  # under the header
    assert main(["info", "resnet18"]) == 0
    out = capsys.readouterr().out
    assert "He" in out and "11,689,512 parameters" in out and "layer4" in out


@pytest.mark.parametrize("argv", [["info", "resnet05"], ["list", "zz*"]])
def test_cli_errors_are_one_line(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnzoo: error:") and err.count("\n") == 1


def test_tour_walks_the_lecture_in_order(capsys, tmp_path):
    assert main(["tour", "--out", str(tmp_path), "--chapters", "architectures"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "index.html").exists()
    positions = [out.index(f"\n{family} (") for family in ["AlexNet", "ZFNet", "VGG", "GoogLeNet", "ResNet"]]
    assert positions == sorted(positions)
    assert "61,100,840 parameters" in out  # alexnet


def test_tour_rejects_unknown_chapter(capsys, tmp_path):
    assert main(["tour", "--out", str(tmp_path), "--chapters", "architecture"]) == 2
    assert "architectures" in capsys.readouterr().err
