"""The student a distillation starts from, cut from the teacher as `distill.student` says.

`layers` keeps the teacher layers named in the config (or spread evenly); `depth` and `width`
first run the teacher over a few training blocks (a calibration pass on curated data, never a
held-out block) and cut by the importance it measured (models/prune.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from models.prune import (
    WidthPlan,
    depth_layers,
    intermediate_for,
    measure_importance,
    prune_width,
    student_params,
)
from models.student import every_other_layer, student_from_teacher, trainable
from tasks.distill.config import DistillConfig, DistillError

if TYPE_CHECKING:
    import torch

    from tasks.distill.data import TokenBlocks

log = logging.getLogger(__name__)


def make_student(
    teacher: torch.nn.Module, cfg: DistillConfig, blocks: TokenBlocks
) -> tuple[torch.nn.Module, list[int], dict[str, Any]]:
    """(fp32 trainable student, the teacher layer each of its layers came from, what was
    decided: kind, layers, sizes, parameters, calibration tokens)."""
    import torch

    sc = cfg.student
    n = int(teacher.config.num_hidden_layers)
    info: dict[str, Any] = {"kind": sc.kind}
    if sc.kind == "layers":
        layers = cfg.layers or every_other_layer(n, cfg.keep_layers or max(n // 2, 1))
        return trainable(student_from_teacher(teacher, layers)), layers, info | {"layers": layers}

    train = blocks.train()[: sc.calibration_blocks]
    if len(train) == 0:
        raise DistillError("no training blocks to calibrate the student's pruning on")
    device = next(teacher.parameters()).device
    ids = torch.from_numpy(blocks.input_ids[train])
    imp = measure_importance(teacher, [b.to(device) for b in ids.split(cfg.batch_blocks)])
    budget = int(sc.share * student_params(teacher.config, WidthPlan()))
    info |= {"calibration_tokens": imp.tokens, "budget_params": budget}
    if sc.kind == "depth":
        keep = max(
            (k for k in range(1, n + 1)
             if student_params(teacher.config, WidthPlan(layers=list(range(k)))) <= budget),
            default=0,
        )  # fmt: skip
        if keep == 0:
            raise DistillError(f"not even one layer fits {sc.share:.0%} of the teacher")
        layers = depth_layers(imp, keep, sc.depth_method)
        log.info("depth pruning (%s): keeping teacher layers %s", sc.depth_method, layers)
        student = trainable(student_from_teacher(teacher, layers))
        return student, layers, info | {"layers": layers, "method": sc.depth_method}

    layers = depth_layers(imp, sc.keep_layers, "span") if sc.keep_layers else list(range(n))
    plan = WidthPlan(
        hidden_size=sc.hidden_size,
        kv_heads=sc.kv_heads,
        heads_per_kv=sc.heads_per_kv,
        layers=layers if len(layers) < n else None,
        intermediate_size=sc.intermediate_size,
    )
    try:
        if plan.intermediate_size is None:
            plan.intermediate_size = intermediate_for(teacher.config, plan, budget)
        if student_params(teacher.config, plan) > budget:
            raise DistillError(f"{plan} has more than {sc.share:.0%} of the teacher's parameters")
        student = prune_width(teacher, imp, plan)
    except ValueError as e:  # a plan the teacher cannot be cut to: a config error, said plainly
        raise DistillError(f"distill.student: {e}") from e
    sizes = {k: v for k, v in vars(plan).items() if v is not None and k != "layers"}
    log.info("width pruning: %s, teacher layers %s", sizes, layers)
    return student, layers, info | {"layers": layers, **sizes}
