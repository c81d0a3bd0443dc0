"""The round rule (extremefast.train.stopping) and the run state saved in state.pt."""
from __future__ import annotations

import pytest
import torch

from extremefast.model import TrainConfig, load_checkpoint, save_checkpoint
from extremefast.train.scheme import RunState
from extremefast.train.stopping import EarlyStop, SettleStop, round_rule, settle_round


def _rows(vals, changes=None):
    changes = changes or [None] * len(vals)
    rows = [{"round": 0, "val_dice": {"mean": 0.5}}]
    for rnd, (val, change) in enumerate(zip(vals, changes), start=1):
        row = {"round": rnd, "val_dice": {"mean": val}}
        if change is not None:
            row["label_change"] = change
        rows.append(row)
    return rows


def test_early_stop_keeps_gains_of_min_delta_and_stops_after_patience():
    rule = EarlyStop(2, lambda row: row["val_dice"]["mean"], min_delta=0.01)
    kept = []
    for row in _rows([0.50, 0.505, 0.52, 0.52, 0.515])[1:]:
        assert not rule.stopped
        kept.append(rule(row))
    assert kept == [True, False, True, False, False]  # 0.505 gains less than 0.01 over 0.50
    assert rule.best_score == 0.52 and rule.since_best == 2 and rule.stopped


def test_settle_stop_keeps_the_latest_round_until_the_labels_settle():
    rule = SettleStop(0.05)
    assert not rule.stopped
    assert rule({"round": 1, "label_change": 0.2}) and not rule.stopped
    assert rule({"round": 2, "label_change": 0.04}) and rule.stopped
    full = SettleStop(0.05)
    full({"round": 1})  # full supervision's rows have no label change, and so never settle
    assert not full.stopped
    assert settle_round(_rows([0.5, 0.6, 0.7], [0.3, 0.04, 0.02]), 0.05) == 2
    assert settle_round(_rows([0.5], [0.3]), 0.05) is None


@pytest.mark.parametrize("selection", ["masks", "settle"])
def test_the_rule_rebuilt_from_saved_rows_equals_the_one_that_saw_them(selection):
    # a resumed run gets its rule back from the rows in state.pt, none of its state saved
    config = TrainConfig(selection=selection, patience=2, min_gain=0.01, settle_change=0.05)
    rows = _rows([0.6, 0.605, 0.58], [0.3, 0.1, 0.04])
    live = round_rule(config)
    for row in rows[1:]:
        live(row)
    rebuilt = round_rule(config, rows)
    assert vars(rebuilt).keys() == vars(live).keys()
    assert {k: v for k, v in vars(rebuilt).items() if k != "score_function"} == \
        {k: v for k, v in vars(live).items() if k != "score_function"}
    assert rebuilt.stopped and live.stopped  # patience 2 after round 1; settled at 0.04


def test_run_state_is_saved_as_plain_data_and_read_back(tmp_path):
    weights = {"w": torch.arange(3.0)}
    state = RunState(round=2, epoch=1, best_select=0.7, best_state=weights, best_round=1, best_model=weights)
    path = save_checkpoint(tmp_path / "state.pt", TrainConfig(), {}, state=state.to_dict())
    back = RunState.from_dict(load_checkpoint(path)["state"])
    assert (back.round, back.epoch, back.best_select, back.best_round) == (2, 1, 0.7, 1)
    assert torch.equal(back.best_state["w"], weights["w"]) and torch.equal(back.best_model["w"], weights["w"])
    back.next_round()
    assert (back.round, back.epoch, back.best_select) == (3, 0, -1.0)


def test_run_state_reads_the_untyped_dict_of_earlier_versions():
    # state.pt before the RunState (or converted from format 1) held eight string keys
    old = {"round": 3, "epoch": 0, "best_select": -1.0, "best_state": None, "best_val": 0.8, "best_round": 2,
           "best_model": None, "since_best": 1}
    state = RunState.from_dict(old)
    assert (state.round, state.epoch, state.best_round) == (3, 0, 2)
