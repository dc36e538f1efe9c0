"""``binarena summary``: the per-layer table, the JSON for scripts, and one-line errors."""

from __future__ import annotations

import json

import pytest

from binarena.b2nn import make_switchable, set_binary
from binarena.cli import main
from binarena.flops import profile
from binarena.registry import MODELS


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["summary", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def test_table_shows_layers_and_the_paper_totals(capsys) -> None:
    code, out, err = run(capsys, "--model", "cresnet20", "--dataset", "cifar100")
    assert code == 0 and err == ""
    assert "layer1.0.unit1.conv" in out and "classifier" in out
    # All 18 block convs binary: 1,931,620 of 41,412,964 FLOPs (the paper: 1.93e6, 4.67 %).
    assert "FLOPs: 1.932e+06 (4.66 % of 4.141e+07 in full precision)" in out
    assert "MACs: 40,818,944" in out
    assert "binary: 18 of 22 switchable layers" in out
    params = sum(p.numel() for p in MODELS.get("cresnet20")((3, 32, 32), 100).parameters())
    assert f"parameters: {params:,}" in out


def test_json_totals_equal_profile(capsys) -> None:
    chosen = ["layer1.0.unit1.conv", "layer3.2.unit2.conv"]
    code, out, _ = run(capsys, "--model", "cresnet20", "--dataset", "cifar100", "--format", "json",
                       "--binary", ",".join(chosen), "--activation", "rprelu")
    assert code == 0
    data = json.loads(out)

    model = make_switchable(MODELS.get("cresnet20")((3, 32, 32), 100, activation="rprelu"))
    set_binary(model, chosen)
    expected = profile(model, (3, 32, 32))
    totals = data["totals"]
    assert data["layers"] == expected.to_rows()
    assert totals["flops"] == expected.flops
    assert totals["macs"] == expected.macs
    assert totals["full_precision_flops"] == expected.full_precision_flops
    assert totals["flops_pct"] == pytest.approx(expected.flops_pct)
    assert totals["params"] == sum(p.numel() for p in model.parameters())
    assert totals["binary_layers"] == 2 and totals["switchable_layers"] == 22
    assert [row["name"] for row in data["layers"] if row["binary"]] == chosen


def test_json_with_options_and_no_binary_layer(capsys) -> None:
    code, out, _ = run(capsys, "--model", "cnn", "--dataset", "digits", "--format", "json",
                       "--binary", "none", "--option", "channels=[4, 8]",
                       "--option", "blocks_per_stage=1")
    assert code == 0
    data = json.loads(out)
    assert data["input_shape"] == [1, 8, 8]
    assert data["options"] == {"channels": [4, 8], "blocks_per_stage": 1}
    assert data["totals"]["flops_pct"] == 100.0 and data["totals"]["binary_layers"] == 0
    model = make_switchable(MODELS.get("cnn")((1, 8, 8), 10, channels=[4, 8], blocks_per_stage=1))
    assert data["totals"]["flops"] == profile(model, (1, 8, 8)).flops


@pytest.mark.parametrize("args, expected", [
    (["--model", "resnet-18", "--dataset", "cifar100"], "unknown model 'resnet-18'"),
    (["--model", "cresnet20", "--dataset", "cifar1000"], "unknown dataset 'cifar1000'"),
    (["--model", "cresnet20", "--dataset", "cifar100", "--activation", "gelu"],
     "unknown activation 'gelu'"),
    (["--model", "cresnet20", "--dataset", "cifar100", "--binary", "layer1.0.conv1"],
     "--binary: unknown layer(s) layer1.0.conv1; switchable layers: stem.0, layer1.0.unit1.conv"),
    (["--model", "cresnet20", "--dataset", "cifar100", "--option", "stem"],
     "--option: expected KEY=VALUE, got 'stem'"),
    (["--model", "cresnet20", "--dataset", "cifar100", "--option", "stem=cifar"],
     "'stem' is not an option of model 'cresnet20'"),
    (["--model", "resnet18", "--dataset", "cifar100", "--option", "stem=huge"],
     "model 'resnet18' cannot be built with these options (ValueError: stem: 'huge' is not one "
     "of imagenet, tinyimagenet, cifar)"),
    (["--model", "cnn", "--dataset", "digits", "--option", "channels=[50000, 50000]"],
     "model 'cnn' with these options has more than 100,000,000 parameters"),
    (["--model", "mobilenetv1", "--dataset", "cifar10", "--option", "width=abc"],
     "options.width: Input should be a valid number"),
])
def test_bad_input_exits_2_with_one_line(capsys, args, expected) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 0, err
    assert err.startswith("binarena: error: ") and expected in err
