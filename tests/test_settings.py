"""Settings describe themselves: every TrainConfig field is a CLI option with help, made from the field;
resolving a config makes a new one; a new field is a new option with nothing else to edit (issue 16 item 1)."""

from __future__ import annotations

import dataclasses

import click
import click.testing
import pytest

from evoprop.cli.train import setting_options, train_command
from evoprop.config import GROUPS, METHODS, Setting, TrainConfig, applies, setting
from evoprop.runs.launch import resolve_config

#: Options of `evoprop train` that are not settings: where settings come from, where the run goes.
NOT_SETTINGS = {"config_file", "out", "resume", "progress", "help"}


def _options(command: click.Command) -> dict[str, click.Option]:
    return {p.name: p for p in command.params if isinstance(p, click.Option)}


def test_every_field_has_a_train_option_with_help_and_every_option_sets_a_field():
    options = _options(train_command)
    for name in TrainConfig.field_names():
        assert name in options, f"TrainConfig.{name} has no option in `evoprop train`"
        assert options[name].help and options[name].help.strip(), f"--{name} has no help"
        assert options[name].multiple or options[name].default is None, (
            f"--{name} must default to None (a config file's value wins)")
    assert set(options) - NOT_SETTINGS == set(TrainConfig.field_names())


def test_every_field_describes_itself():
    for name, s in TrainConfig.settings().items():
        assert isinstance(s, Setting) and s.group in GROUPS, name
        assert s.help_text().strip() and "{choices}" not in s.help_text(), name
        assert set(s.applies_to) <= set(METHODS), name
    assert sum(len(TrainConfig.group(g)) for g in GROUPS) == len(TrainConfig.field_names())
    assert "popsize" in TrainConfig.group("evolution") and "lr" in TrainConfig.group("optimizer")


def test_which_settings_apply_come_from_the_fields():
    assert not applies("lr", {"method": "es"}) and applies("lr", {"method": "hybrid"})
    assert not applies("popsize", {"method": "gradient"}) and applies("popsize", {"method": "es"})
    assert not applies("width", {"method": "gradient", "model": "mlp", "depth": 1})
    assert not applies("depth", {"method": "gradient", "model": "resnet18"})
    assert applies("resnet_width", {"method": "gradient", "model": "resnet18"})


def test_resolving_a_config_makes_a_new_one_and_leaves_the_input_as_it_was():
    given = TrainConfig(schedule="step", epochs=8, optimizer_options={"lr": 0.2, "momentum": 0.5},
                        optimizer="momentum")
    before = dataclasses.replace(given, optimizer_options=dict(given.optimizer_options))
    resolved = resolve_config(given)
    assert resolved is not given
    assert given == before  # nothing written back: lr still among the options, schedule defaults unset
    assert resolved.lr == 0.2 and "lr" not in resolved.optimizer_options
    assert resolved.stage_epochs == 1 and resolved.milestones == [4, 6] and resolved.gamma == 0.1
    plain = TrainConfig()
    assert resolve_config(plain).lr == 0.01 and plain.lr is None


def test_a_new_field_is_a_new_option_with_nothing_else_to_edit():
    """What adding an ES option takes: the field, with its metadata (and the code that uses it)."""
    extended = dataclasses.make_dataclass(
        "Extended",
        [("es_damping", float, setting(1.0, group="evolution", applies_to=("hybrid", "es"),
                                       help="Damping of the step-size update."))],
        bases=(TrainConfig,))

    @click.command()
    @setting_options(config_class=extended)
    def command(**options):
        click.echo(repr(options["es_damping"]))

    runner = click.testing.CliRunner()
    result = runner.invoke(command, ["--help"], terminal_width=200)
    assert result.exit_code == 0 and "--es-damping X" in result.output
    assert "Damping of the step-size update. [default: 1.0]" in result.output
    assert runner.invoke(command, ["--es-damping", "0.5"]).output.strip() == "0.5"
    assert "es_damping" in extended.group("evolution")


@pytest.mark.parametrize("flag, value, field", [("--opt", "momentum=0.9", "optimizer_options"),
                                                ("--es-layers", "0,1", "es_layers"),
                                                ("--milestones", "2,3", "milestones")])
def test_the_special_options_are_made_from_their_fields_too(flag, value, field):
    option = _options(train_command)[field]
    assert flag in option.opts
    ctx = train_command.make_context("train", [flag, value])
    assert ctx.params[field] in (("momentum=0.9",), [0, 1], [2, 3])


def test_the_lab_commands_take_their_model_options_from_the_same_fields():
    """One statement of each setting: `evoprop landscape --help` shows TrainConfig's own help for --depth."""
    from evoprop.cli.landscape import landscape_command

    help_text = {p.name: p.help for p in landscape_command.params if isinstance(p, click.Option)}
    depth = next(f for f in dataclasses.fields(TrainConfig) if f.name == "depth").metadata["setting"]
    assert help_text["depth"].startswith(depth.help_text().rstrip("."))
    assert "data_split" in help_text and "not with --run" in help_text["data_split"]
