"""Train the tiny CLIP ``vadindex-tiny`` on synthetic surveillance scenes and evaluate it on a held-out seed.

Typical use (about 18 minutes on 2 idle CPU cores: 2.5 to render and decode the scenes, 15 to train
2,400 steps at 0.37-0.40 s each)::

    python scripts/train_tiny_clip.py                 # generate data, train, save, evaluate
    python scripts/train_tiny_clip.py --eval-only     # evaluate the saved weights on the held-out seed

The shipped weights are this command's output (scene generator v3), run once; the held-out seed's
figures it prints during training are for watching, and no step or setting was chosen by them.
``scripts/eval_demo_seeds.py`` then measures the real pipeline (``vadindex demo``) on held-out seeds.

Training scenes use seeds ``TRAIN_SEED_START ...`` (1000, 1001, ...); evaluation uses ``DEMO_SEED`` (7)
and the open-set prompt wordings in ``vadindex.demo.synth`` (``DEMO_*``), none of which is a training caption.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Threads that wait at a barrier sleep instead of spinning: on a shared 2-core machine spinning threads
# burn the time the other thread (or another process) needs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vadindex.demo import synth  # noqa: E402

log = logging.getLogger("vadindex")

MODEL_NAME = "vadindex-tiny"
DEFAULT_CONFIG = REPO / "vadindex" / "models" / f"{MODEL_NAME}.json"
DEFAULT_WEIGHTS = REPO / "vadindex" / "models" / f"{MODEL_NAME}.safetensors"
DEFAULT_WORK = REPO / "out" / "tiny_clip"
EOT_ID = 49407
SOT_ID = 49406

#: Share of normal frames in a training batch (the rest is spread evenly over the event classes).
NORMAL_SHARE = 0.4


def generator_tag() -> str:
    """Tag of the scene generator's version, so cached scenes and frames follow its changes."""
    return f"v{synth.GENERATOR_VERSION}"


@dataclass(frozen=True)
class FrameSet:
    """Preprocessed frames (uint8, N x S x S x 3, after resize + centre crop) and their labels."""

    images: np.ndarray
    classes: np.ndarray  # class name per frame
    scenes: np.ndarray  # scene kind per frame
    video: np.ndarray  # video index per frame
    frame: np.ndarray  # frame number in its video


def build_preprocess(image_size: int):
    """Build the deterministic part of open_clip's eval transform (resize shortest side, centre crop).

    Args:
        image_size: Model input size.

    Returns:
        A callable PIL image -> PIL image; ``ToTensor`` + ``Normalize`` are applied later in batches.
    """
    import open_clip

    t = open_clip.image_transform(image_size, is_train=False)
    return lambda im: t.transforms[1](t.transforms[0](im))  # Resize(bicubic), CenterCrop


def decode_frames(path: Path, indices: set[int] | None = None) -> list[tuple[int, np.ndarray]]:
    """Decode an RGB video with PyAV, keeping only ``indices`` (all frames if None).

    Args:
        path: Video file.
        indices: Frame numbers to keep.

    Returns:
        ``(frame number, RGB uint8 array)`` pairs.
    """
    import av

    out = []
    with av.open(str(path)) as c:
        for i, fr in enumerate(c.decode(c.streams.video[0])):
            if indices is None or i in indices:
                out.append((i, fr.to_ndarray(format="rgb24")))
    return out


def load_frame_set(
    scene_set: synth.SceneSet, image_size: int, every: int | None = None, sample_fps: float | None = None
) -> FrameSet:
    """Decode and preprocess frames of a scene set.

    Args:
        scene_set: Generated scenes.
        image_size: Model input size.
        every: Keep every ``every``-th frame (training).
        sample_fps: Or keep frames at this rate, ``floor(k * fps / sample_fps)`` (evaluation).

    Returns:
        The frames and labels.
    """
    from PIL import Image

    pre = build_preprocess(image_size)
    imgs, classes, scenes, vids, fnums = [], [], [], [], []
    for vi, v in enumerate(scene_set.videos):
        if sample_fps:
            idx = sorted(
                {int(math.floor(k * v.fps / sample_fps)) for k in range(int(v.duration_s * sample_fps) + 1)}
            )
            idx = [i for i in idx if i < v.n_frames]
        else:
            idx = list(range(0, v.n_frames, every or 1))
        labels = synth.frame_classes(v)
        for f, arr in decode_frames(scene_set.root / v.path, set(idx)):
            imgs.append(np.asarray(pre(Image.fromarray(arr))))
            classes.append(labels[f])
            scenes.append(v.scene)
            vids.append(vi)
            fnums.append(f)
    return FrameSet(np.stack(imgs), np.array(classes), np.array(scenes), np.array(vids), np.array(fnums))


def ensure_scene_set(
    root: Path, seed: int, n_normal: int, n_anomaly: int, workers: int, fps: int = synth.DEFAULT_FPS
) -> synth.SceneSet:
    """Generate a scene set unless an identical one is already on disk.

    Args:
        root: Folder of the scene set.
        seed: Scene-set seed.
        n_normal: Normal videos.
        n_anomaly: Anomalous videos.
        workers: Rendering processes.
        fps: Frame rate of the videos.

    Returns:
        The scene set.
    """
    meta = root / synth.SCENES_JSON_NAME
    if meta.exists():
        d = json.loads(meta.read_text())
        vids = d["videos"]
        if (
            d["seed"] == seed
            and sum(v["cls"] == synth.NORMAL_CLASS for v in vids) == n_normal
            and len(vids) == n_normal + n_anomaly
            and all(v["fps"] == fps for v in vids)
            and all((root / v["path"]).exists() for v in vids)
        ):
            infos = tuple(
                synth.VideoInfo(**{**v, "spans": tuple(tuple(s) for s in v["spans"])})
                for v in [{k: x for k, x in v.items() if k != "duration_s"} for v in vids]
            )
            return synth.SceneSet(
                root, root / synth.MANIFEST_NAME, root / synth.ANNOTATIONS_NAME, meta, seed, infos
            )
    return synth.generate_scenes(
        root, seed=seed, n_normal=n_normal, n_anomaly=n_anomaly, workers=workers, fps=fps
    )


def load_training_frames(args: argparse.Namespace, image_size: int) -> FrameSet:
    """Generate (or reuse) the training scene sets and return their preprocessed frames."""
    cache = args.work_dir / (
        f"train_{args.train_seed_start}_{args.n_train_sets}_{args.n_normal}_{args.n_anomaly}"
        f"_{args.train_fps}_{args.every}_{image_size}_{generator_tag()}.npz"
    )
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        return FrameSet(z["images"], z["classes"], z["scenes"], z["video"], z["frame"])
    parts = []
    t0 = time.time()
    for k in range(args.n_train_sets):
        seed = args.train_seed_start + k
        s = ensure_scene_set(
            args.work_dir / f"scenes_{seed}_{args.train_fps}fps_{generator_tag()}",
            seed,
            args.n_normal,
            args.n_anomaly,
            args.workers,
            fps=args.train_fps,
        )
        parts.append(load_frame_set(s, image_size, every=args.every))
        log.info(
            "train set %d/%d (seed %d): %d frames, %.0fs elapsed",
            k + 1,
            args.n_train_sets,
            seed,
            len(parts[-1].images),
            time.time() - t0,
        )
    fs = FrameSet(
        *(
            np.concatenate([getattr(p, f) for p in parts])
            for f in ("images", "classes", "scenes", "video", "frame")
        )
    )
    args.work_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        images=fs.images,
        classes=fs.classes.astype(str),
        scenes=fs.scenes.astype(str),
        video=fs.video,
        frame=fs.frame,
    )
    os.replace(tmp, cache)
    return fs


# ------------------------------------------------------------------------------------------------------
# Model helpers
# ------------------------------------------------------------------------------------------------------


def create_model(config: Path):
    """Register the config with open_clip and build the model (random init)."""
    import open_clip

    open_clip.add_model_config(config)
    return open_clip.create_model(config.stem)


def encode_text_short(model, tokens):
    """``model.encode_text`` on tokens truncated after the longest caption (same result, less compute).

    The text tower is causal, and pooling reads the EOT position, so padding after it never matters.
    """
    import torch

    n = tokens.shape[1]
    x = model.token_embedding(tokens) + model.positional_embedding[:n]
    x = model.transformer(x, attn_mask=model.attn_mask[:n, :n])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)]
    return x @ model.text_projection


def to_batch(images: np.ndarray, mean, std):
    """uint8 N x S x S x 3 -> normalised float tensor N x 3 x S x S (ToTensor + Normalize)."""
    import torch

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


def augment_batch(images: np.ndarray, rng: np.random.Generator, mean, std, crop_prob: float = 0.7):
    """Random flip, zoom-in crop and colour jitter of uint8 frames; returns a normalised float batch.

    The scenes place events anywhere in the centre crop, at several sizes and lightings already; the
    augmentation stops the model from memorising the exact pixels of the few hundred training events.
    """
    import torch
    import torch.nn.functional as F

    n, size = len(images), images.shape[1]
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)
    flip = torch.from_numpy(rng.random(n) < 0.5)
    x[flip] = x[flip].flip(-1)
    out = []
    for i in range(n):
        xi = x[i : i + 1]
        if rng.random() < crop_prob:
            c = int(size * rng.uniform(0.8, 1.0))
            y0, x0 = int(rng.integers(0, size - c + 1)), int(rng.integers(0, size - c + 1))
            xi = F.interpolate(
                xi[:, :, y0 : y0 + c, x0 : x0 + c], size=(size, size), mode="bilinear", antialias=True
            )
        out.append(xi)
    x = torch.cat(out)
    gain = torch.from_numpy(
        rng.uniform(0.55, 1.3, size=(n, 1, 1, 1)) * rng.uniform(0.9, 1.1, size=(n, 3, 1, 1))
    )
    contrast = torch.from_numpy(rng.uniform(0.8, 1.2, size=(n, 1, 1, 1)))
    mu = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mu) * contrast.float() + mu) * gain.float()
    x = x.clamp_(0, 1)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


class CaptionSampler:
    """Draw training captions per class and tokenize them, with random filler-token insertion."""

    def __init__(self, tokenizer, rng: np.random.Generator, insert_prob: float) -> None:
        self.tok = tokenizer
        self.rng = rng
        self.insert_prob = insert_prob
        self.cache: dict[str, list[int]] = {}

    def ids(self, text: str) -> list[int]:
        if text not in self.cache:
            t = self.tok([text])[0].tolist()
            self.cache[text] = t[: t.index(EOT_ID) + 1]
        return self.cache[text]

    def batch(self, classes: np.ndarray, scenes: np.ndarray):
        import torch

        seqs = []
        for c, s in zip(classes, scenes, strict=True):
            ids = list(self.ids(synth.make_caption(str(c), str(s), self.rng)))
            if self.rng.random() < self.insert_prob:  # teach the text tower to shrug off unknown words
                for _ in range(int(self.rng.integers(1, 3))):
                    pos = int(self.rng.integers(1, len(ids)))
                    ids.insert(pos, int(self.rng.integers(1, SOT_ID)))
            seqs.append(ids[:77])
        n = max(len(x) for x in seqs)
        out = torch.zeros(len(seqs), n, dtype=torch.long)
        for i, x in enumerate(seqs):
            out[i, : len(x)] = torch.tensor(x)
        return out


def class_contrastive_loss(img, txt, labels, logit_scale):
    """Symmetric InfoNCE where every image-caption pair of the same class counts as a positive.

    Args:
        img: L2-normalised image embeddings, B x D.
        txt: L2-normalised caption embeddings, B x D (caption i describes image i).
        labels: Class index per pair, B.
        logit_scale: The model's log temperature (exponentiated here).

    Returns:
        Scalar loss.
    """
    import torch

    logits = logit_scale.exp() * img @ txt.T
    pos = (labels[:, None] == labels[None, :]).float()
    target = pos / pos.sum(dim=1, keepdim=True)
    li = -(target * torch.log_softmax(logits, dim=1)).sum(1).mean()
    lt = -(target * torch.log_softmax(logits.T, dim=1)).sum(1).mean()
    return 0.5 * (li + lt)


# ------------------------------------------------------------------------------------------------------
# Evaluation (approximates the lead's pipeline: 4 fps frames, 1 s segments, prompt softmax)
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalResult:
    """Held-out figures."""

    video_f1: float
    video_f1_top2: float
    segment_f1: float
    segment_precision: float
    segment_recall: float
    segment_auc: float
    frame_class_acc: float
    precision_at_5: dict[str, float]
    mean_precision_at_5: float
    prompt_text_check: dict[str, str]  # demo text -> nearest training-caption class (text side only)
    logit_scale: float
    n_videos: int
    n_segments: int


def f1_score(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall, F1 of binary predictions ``p`` against ``y``."""
    tp = float(np.sum(y & p))
    prec = tp / max(1.0, float(np.sum(p)))
    rec = tp / max(1.0, float(np.sum(y)))
    return prec, rec, (2 * prec * rec / (prec + rec) if prec + rec else 0.0)


def auc_score(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC by the rank statistic (ties averaged)."""
    from scipy.stats import rankdata  # scipy ships with scikit-learn's dependencies

    r = rankdata(s)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def encode_images(model, images: np.ndarray, mean, std, batch: int = 256) -> np.ndarray:
    """L2-normalised image embeddings of preprocessed uint8 frames."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            out.append(
                torch.nn.functional.normalize(
                    model.encode_image(to_batch(images[i : i + batch], mean, std)), dim=-1
                )
            )
    return torch.cat(out).numpy()


def encode_texts(model, tokenizer, texts: list[str]) -> np.ndarray:
    """L2-normalised text embeddings (full 77-token path, as at inference)."""
    import torch

    with torch.no_grad():
        return torch.nn.functional.normalize(model.encode_text(tokenizer(texts)), dim=-1).numpy()


def check_prompts(model, tokenizer) -> dict[str, str]:
    """Map every demo prompt and query to the class whose training captions it is closest to (text only).

    Returns:
        ``{text: class}``; a sound text tower maps anomaly prompts to event classes, normal prompts to
        ``Normal`` and each query to its own class.
    """
    names = [synth.NORMAL_CLASS, *synth.EVENT_CLASSES]
    protos = []
    for c in names:
        e = encode_texts(
            model, tokenizer, [t.format(w) for t in synth.TRAIN_TEMPLATES for w in synth.TRAIN_WORDINGS[c]]
        )
        m = e.mean(0)
        protos.append(m / np.linalg.norm(m))
    texts = [*synth.DEMO_ANOMALY_PROMPTS, *synth.DEMO_NORMAL_PROMPTS, *synth.DEMO_QUERIES]
    sims = encode_texts(model, tokenizer, texts) @ np.stack(protos).T
    return {t: names[int(i)] for t, i in zip(texts, sims.argmax(1), strict=True)}


def evaluate(
    model,
    tokenizer,
    fs: FrameSet,
    scene_set: synth.SceneSet,
    mean,
    std,
    threshold: float = 0.5,
    segment_s: float = 1.0,
) -> EvalResult:
    """Score held-out videos with the demo prompts and measure video/segment F1 and query precision@5.

    Args:
        model: The CLIP model (eval mode).
        tokenizer: Its tokenizer.
        fs: Frames of ``scene_set`` sampled at 4 fps.
        scene_set: Held-out scenes.
        mean: Normalisation mean.
        std: Normalisation std.
        threshold: Anomaly-score threshold.
        segment_s: Segment length in seconds.

    Returns:
        The figures.
    """
    model.eval()
    emb = encode_images(model, fs.images, mean, std)
    an = encode_texts(model, tokenizer, list(synth.DEMO_ANOMALY_PROMPTS))
    no = encode_texts(model, tokenizer, list(synth.DEMO_NORMAL_PROMPTS))
    scale = float(model.logit_scale.detach().exp())
    seg_emb, seg_y, seg_cls, seg_vid = [], [], [], []
    for vi, v in enumerate(scene_set.videos):
        lab = synth.frame_classes(v)
        seg_len = int(round(segment_s * v.fps))
        for s0 in range(0, v.n_frames, seg_len):
            s1 = min(v.n_frames, s0 + seg_len)
            m = (fs.video == vi) & (fs.frame >= s0) & (fs.frame < s1)
            if not m.any():
                continue
            e = emb[m].mean(0)
            seg_emb.append(e / np.linalg.norm(e))
            frac = float(np.mean(lab[s0:s1] != synth.NORMAL_CLASS))
            seg_y.append(frac >= 0.5)
            seg_cls.append(v.cls if frac >= 0.5 else synth.NORMAL_CLASS)
            seg_vid.append(vi)
    seg_emb = np.stack(seg_emb)
    seg_y, seg_cls, seg_vid = np.array(seg_y), np.array(seg_cls), np.array(seg_vid)
    logits = scale * seg_emb @ np.concatenate([an, no]).T
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
    score = p[:, : len(an)].sum(1)
    sp, sr, sf = f1_score(seg_y, score >= threshold)
    vy = np.array([v.label == "anomaly" for v in scene_set.videos])
    vmax = np.array([score[seg_vid == i].max() for i in range(len(scene_set.videos))])
    vtop2 = np.array([np.sort(score[seg_vid == i])[-2:].mean() for i in range(len(scene_set.videos))])
    # frame-level 6-way accuracy with one demo-style prompt per class (diagnostic)
    class_prompts = {
        synth.NORMAL_CLASS: synth.DEMO_NORMAL_PROMPTS[0],
        **{c: q for q, c in synth.DEMO_QUERIES.items()},
    }
    names = list(class_prompts)
    ce = encode_texts(model, tokenizer, [class_prompts[c] for c in names])
    pred = np.array(names)[np.argmax(emb @ ce.T, axis=1)]
    acc = float(np.mean(pred == fs.classes))
    p5 = {}
    for q, c in synth.DEMO_QUERIES.items():
        qe = encode_texts(model, tokenizer, [q])[0]
        top = np.argsort(-(seg_emb @ qe))[:5]
        p5[q] = float(np.mean(seg_cls[top] == c))
    return EvalResult(
        prompt_text_check=check_prompts(model, tokenizer),
        video_f1=f1_score(vy, vmax >= threshold)[2],
        video_f1_top2=f1_score(vy, vtop2 >= threshold)[2],
        segment_f1=sf,
        segment_precision=sp,
        segment_recall=sr,
        segment_auc=auc_score(seg_y, score),
        frame_class_acc=acc,
        precision_at_5=p5,
        mean_precision_at_5=float(np.mean(list(p5.values()))),
        logit_scale=scale,
        n_videos=len(scene_set.videos),
        n_segments=len(seg_y),
    )


# ------------------------------------------------------------------------------------------------------
# Save / load
# ------------------------------------------------------------------------------------------------------


def save_weights(model, path: Path, metadata: dict[str, str]) -> None:
    """Save the state dict as fp16 safetensors, atomically."""
    import torch
    from safetensors.torch import save_file

    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(sd, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def load_weights(model, path: Path) -> None:
    """Load fp16 safetensors into ``model`` as float32, strictly (as the inference side does)."""
    from safetensors.torch import load_file

    sd = {k: v.float() for k, v in load_file(str(path)).items()}
    model.load_state_dict(sd, strict=True)


# ------------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS, help="weights file (.safetensors)")
    p.add_argument("--work-dir", type=Path, default=DEFAULT_WORK, help="cache of generated scenes and frames")
    p.add_argument("--train-seed-start", type=int, default=synth.TRAIN_SEED_START)
    p.add_argument("--n-train-sets", type=int, default=64)
    p.add_argument("--n-normal", type=int, default=4, help="normal videos per training set")
    p.add_argument("--n-anomaly", type=int, default=16, help="anomalous videos per training set")
    p.add_argument(
        "--train-fps",
        type=int,
        default=2,
        help="frame rate of the training videos (low: more videos per second)",
    )
    p.add_argument("--every", type=int, default=1, help="keep every n-th frame of training videos")
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--crop-prob", type=float, default=0.5, help="chance of a random zoom-in crop")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--insert-prob", type=float, default=0.3, help="chance of inserting random filler tokens")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="processes for scene rendering")
    p.add_argument("--eval-seed", type=int, default=synth.DEMO_SEED)
    p.add_argument("--eval-n-normal", type=int, default=10)
    p.add_argument("--eval-n-anomaly", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=0, help="evaluate every n steps (0: only at the end)")
    p.add_argument("--eval-only", action="store_true", help="evaluate the weights in --out and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Train (or only evaluate) the tiny CLIP."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    log.setLevel(logging.INFO)  # open_clip logs its own chatter on the root logger at INFO
    import open_clip
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t_start = time.time()
    cfg = json.loads(args.config.read_text())
    image_size = int(cfg["vision_cfg"]["image_size"])
    pp = cfg.get("preprocess_cfg", {})
    mean = tuple(pp.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(pp.get("std", open_clip.OPENAI_DATASET_STD))
    model = create_model(args.config)
    tokenizer = open_clip.get_tokenizer(args.config.stem)

    eval_set = ensure_scene_set(
        args.work_dir / f"eval_{args.eval_seed}_{generator_tag()}",
        args.eval_seed,
        args.eval_n_normal,
        args.eval_n_anomaly,
        args.workers,
    )
    eval_fs = load_frame_set(eval_set, image_size, sample_fps=4.0)

    def report(tag: str) -> EvalResult:
        r = evaluate(model, tokenizer, eval_fs, eval_set, mean, std)
        log.info(
            "[%s] held-out seed %d: video F1 %.3f (top2 %.3f), segment F1 %.3f (P %.3f R %.3f AUC %.3f), "
            "frame 6-way acc %.3f, P@5 %.3f %s, logit_scale %.1f",
            tag,
            args.eval_seed,
            r.video_f1,
            r.video_f1_top2,
            r.segment_f1,
            r.segment_precision,
            r.segment_recall,
            r.segment_auc,
            r.frame_class_acc,
            r.mean_precision_at_5,
            r.precision_at_5,
            r.logit_scale,
        )
        return r

    if args.eval_only:
        load_weights(model, args.out)
        r = report("eval-only")
        print(json.dumps(r.__dict__, indent=1))
        return 0

    fs = load_training_frames(args, image_size)
    log.info(
        "training frames: %d (%s), data ready after %.0fs",
        len(fs.images),
        {c: int((fs.classes == c).sum()) for c in (synth.NORMAL_CLASS, *synth.EVENT_CLASSES)},
        time.time() - t_start,
    )
    names = [synth.NORMAL_CLASS, *synth.EVENT_CLASSES]
    cls_idx = np.array([names.index(c) for c in fs.classes])
    share = np.array(
        [NORMAL_SHARE] + [(1 - NORMAL_SHARE) / len(synth.EVENT_CLASSES)] * len(synth.EVENT_CLASSES)
    )
    counts = np.bincount(cls_idx, minlength=len(names)).astype(float)
    probs = share[cls_idx] / np.maximum(counts[cls_idx], 1)
    probs /= probs.sum()

    # sanity: the short text path equals open_clip's encode_text
    with torch.no_grad():
        toks = tokenizer(["a cctv frame of a car crash in a parking lot", "people walking"])
        full = model.encode_text(toks)
        short = encode_text_short(model, toks[:, : int(toks.argmax(-1).max()) + 1])
        assert torch.allclose(full, short, atol=1e-4), "short text path differs from encode_text"

    # The 49408-row token table gets sparse gradients (only a few hundred words occur): SparseAdam updates
    # just those rows, which is much cheaper than a dense AdamW step over 6M numbers.
    model.token_embedding.sparse = True
    decay, no_decay = [], []
    for n_, p_ in model.named_parameters():
        if n_ == "token_embedding.weight":
            continue
        (no_decay if p_.ndim < 2 or "ln" in n_ or "bias" in n_ or "logit_scale" in n_ else decay).append(p_)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    opt_emb = torch.optim.SparseAdam([model.token_embedding.weight], lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    rng = np.random.default_rng(args.seed)
    captions = CaptionSampler(tokenizer, rng, args.insert_prob)
    max_scale = math.log(100.0)
    t_train = time.time()
    model.train()
    for step in range(args.steps):
        lr = (
            args.lr * (step + 1) / args.warmup
            if step < args.warmup
            else 0.5
            * args.lr
            * (1 + math.cos(math.pi * (step - args.warmup) / max(1, args.steps - args.warmup)))
        )
        for g in [*opt.param_groups, *opt_emb.param_groups]:
            g["lr"] = lr
        idx = rng.choice(len(probs), size=args.batch_size, p=probs)
        x = augment_batch(fs.images[idx], rng, mean, std, crop_prob=args.crop_prob)
        toks = captions.batch(fs.classes[idx], fs.scenes[idx])
        img = torch.nn.functional.normalize(model.encode_image(x), dim=-1)
        txt = torch.nn.functional.normalize(encode_text_short(model, toks), dim=-1)
        loss = class_contrastive_loss(img, txt, torch.from_numpy(cls_idx[idx]), model.logit_scale)
        opt.zero_grad(set_to_none=True)
        opt_emb.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        opt_emb.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, max_scale)
        if step % 25 == 0 or step == args.steps - 1:
            el = time.time() - t_train
            log.info(
                "step %d/%d loss %.4f logit_scale %.1f lr %.2e  %.0fs (%.2fs/step)",
                step,
                args.steps,
                loss.item(),
                model.logit_scale.exp().item(),
                lr,
                el,
                el / (step + 1),
            )
        if args.eval_every and step and step % args.eval_every == 0:
            report(f"step {step}")
            model.train()
            model.token_embedding.sparse = True
    train_s = time.time() - t_train
    model.token_embedding.sparse = False
    model.eval()
    meta = {
        "model": MODEL_NAME,
        "config": json.dumps(cfg),
        "train_seeds": f"{args.train_seed_start}..{args.train_seed_start + args.n_train_sets - 1}",
        "args": json.dumps({k: str(v) for k, v in vars(args).items()}),
        "train_seconds": f"{train_s:.0f}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(model, args.out, meta)
    load_weights(model, args.out)  # evaluate exactly what was saved (fp16 -> fp32)
    r = report("final")
    log.info(
        "saved %s (%.1f MiB); training %.0fs, total %.0fs",
        args.out,
        args.out.stat().st_size / 2**20,
        train_s,
        time.time() - t_start,
    )
    print(json.dumps(r.__dict__, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
