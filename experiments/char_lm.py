"""char_lm: character-level language models of the Python standard library's own source, against compressors.

The corpus is the running interpreter's standard library (top-level ``*.py`` files, split by file into train /
valid / test by a hash of the name; ``experiments/text.py``); the models read its UTF-8 bytes. A tanh RNN, a
GRU and an LSTM (and a 2-layer LSTM in the full profile), each sized to about the same number of parameters, are
trained char-rnn style (Karpathy 2015): the training text cut into parallel streams, consecutive windows, the
state carried from each window to the next with its gradient stopped, Adam with gradient clipping. The table
gives the held-out bits per character, the test text scored in one pass with the state carried throughout
(``jrnn.bits_per_token``), against baselines computed in the run on the same text: the unigram entropy, and zlib
-9, bz2 -9 and lzma -9e, each as ``8 · (|C(train + test)| − |C(train)|) / |test|`` (the training text as context)
and alone. Beating bz2 is the bar char-RNNs have long been held to. The samples are continuations of a fixed
prompt at temperatures 0.5 and 1.0 (``jrnn.generate``).
"""

from __future__ import annotations

import concurrent.futures
import pathlib
import time

import jax
import numpy as np
import optax

import jrnn
from experiments import _backbone, _common, _models, text

PROFILES = {
    # Small models and batches: at batch 8 the recurrent matmuls stay in cache on one core, as cheap per
    # character as batch 32 (measured) and with four times the updates. The learning rates are each model's best
    # on the validation text in a grid {3e-3, 5e-3, 1e-2, 2e-2} at 600k characters (bits/char, tanh-rnn: 2.98,
    # 2.87, diverged at 1e-2; gru: 2.71 at 5e-3, 2.72 at 1e-2; lstm: 2.95, 2.77, 2.76): the tanh RNN diverges
    # where the gated cells learn fastest.
    "quick": dict(models=("tanh-rnn", "gru", "lstm"), params=100_000, embed=32, batch=8, window=64,
                  chars=800_000, lr={"tanh-rnn": 5e-3, "gru": 5e-3, "lstm": 1e-2}, max_norm=5.0, evals=5,
                  valid_chars=60_000, eval_streams=16, test_streams=1, prompt="def ", sample_chars=300,
                  temperatures=(0.5, 1.0), sample_models=("lstm",), limit=None),
    # About an hour on 2 cores (per-step rates measured: 60 to 65 minutes): four times the parameters, 14 M
    # training characters each (3.2 epochs), the learning rates halved for the larger models (not tuned).
    "full": dict(models=("tanh-rnn", "gru", "lstm", "lstm-2"), params=400_000, embed=64, batch=16, window=100,
                 chars=14_000_000, lr={"tanh-rnn": 2.5e-3, "gru": 2.5e-3, "lstm": 5e-3, "lstm-2": 5e-3},
                 max_norm=5.0, evals=8, valid_chars=None, eval_streams=16, test_streams=1, prompt="def ",
                 sample_chars=600, temperatures=(0.5, 1.0), sample_models=("tanh-rnn", "gru", "lstm", "lstm-2"),
                 limit=None),
    # Recurrent regularisation on the full profile's LSTM (about 20 minutes on 2 cores): none, Gal & Ghahramani's
    # variational dropout (one mask per stream and window on the inputs, the state entering W, the outputs), and
    # Merity et al.'s weight drop on W; 4 M training characters each (about one epoch), the rates not tuned.
    "regularise": dict(models=("lstm", "lstm+vd", "lstm+wd"), params=400_000, embed=64, batch=16, window=100,
                       chars=4_000_000, lr={"lstm": 5e-3, "lstm+vd": 5e-3, "lstm+wd": 5e-3}, max_norm=5.0,
                       evals=6, valid_chars=None, eval_streams=16, test_streams=1, prompt="def ", sample_chars=300,
                       temperatures=(0.5,), sample_models=(), limit=None),
    # The modern blocks (issue 22) beside the GRU, same parameter budget and characters: pre-norm residual stacks
    # (jrnn.pre_norm, the final norm of jrnn.language_model(norm=True)) of 4 blocks each, the width the largest
    # multiple of 16 within the budget; windows of 128 (two of jrnn.chunked's 64-step chunks). The learning rates
    # are 2e-3 for the blocks (not tuned) and the full profile's 2.5e-3 for the GRU.
    "blocks": dict(models=("gru", "hawk-4", "mamba2-4", "mlstm-4", "gated_delta_net-4"), params=400_000, embed=64,
                   batch=16, window=128, chars=3_000_000,
                   lr={"gru": 2.5e-3, "mamba2-4": 2e-3, "mlstm-4": 2e-3, "gated_delta_net-4": 2e-3, "hawk-4": 2e-3},
                   max_norm=5.0, evals=6, valid_chars=None, eval_streams=16, test_streams=1, prompt="def ",
                   sample_chars=300, temperatures=(0.5,), sample_models=("mamba2-4",), limit=None),
    # The best of the blocks on the full profile's budget: 14 M training characters (the GRU's 1.444 and the LSTM's
    # 1.461 bits/char there had the same 400k parameters), to measure against lzma's 1.371.
    "blocks_long": dict(models=("mamba2-4",), params=400_000, embed=64, batch=16, window=128, chars=14_000_000,
                        lr={"mamba2-4": 2e-3}, max_norm=5.0, evals=8, valid_chars=None, eval_streams=16,
                        test_streams=1, prompt="def ", sample_chars=600, temperatures=(0.5, 1.0),
                        sample_models=("mamba2-4",), limit=None),
}

DROPOUT = {  # the regularised variants: a model name's suffix -> jrnn.recurrent_dropout's rates
    "vd": jrnn.recurrent_dropout(input=0.1, state=0.2, output=0.2),
    "wd": jrnn.recurrent_dropout(weight=0.3),
}


BLOCKS = ("mamba2", "mlstm", "gated_delta_net", "hawk", "mamba", "lstm", "gru")  # names of pre-norm stacks


def blocks(name: str) -> tuple[str, int] | None:
    """``KIND-L`` with ``KIND`` in :data:`BLOCKS` -> ``(KIND, L)``, a stack of ``L`` pre-norm residual blocks;
    None for the other names."""
    kind, _, layers = name.rpartition("-")
    return (kind, int(layers)) if kind in BLOCKS and layers.isdigit() else None


def network(name: str, hidden: int):
    """``tanh-rnn``, ``gru``, ``lstm`` (one layer; experiments/_models.py's cells), ``lstm-2`` (two layers);
    ``NAME+vd`` / ``NAME+wd``: the one-layer network with variational dropout / weight drop (``DROPOUT``);
    ``KIND-L`` (:func:`blocks`): ``L`` blocks ``x + cell(RMSNorm(x))`` of width ``hidden``
    (:func:`jrnn.pre_norm`; the cells of experiments/_backbone.py: 4 heads, Mamba-2's N = 16 and heads of 32)."""
    stack = blocks(name)
    if stack is not None:
        kind, layers = stack
        options = {"head_dim": 32} if kind == "mamba2" else None  # heads of 32 channels: any multiple of 16 fits
        return jrnn.deep([jrnn.pre_norm(_backbone.cell(kind, hidden, options)) for _ in range(layers)])
    name, _, regulariser = name.partition("+")
    if regulariser:
        return jrnn.RNN(_models.cell(name, hidden), dropout=DROPOUT[regulariser])
    if name == "lstm-2":
        return jrnn.deep([_models.cell("lstm", hidden), _models.cell("lstm", hidden)])
    return _models.cell(name, hidden)


def build(name: str, hidden: int, vocab: int, embed: int) -> jrnn.LanguageModel:
    """The language model of ``network(name, hidden)``; a stack of blocks embeds to its width ``hidden`` (not
    ``embed``) and normalises before the readout."""
    if blocks(name) is not None:
        return jrnn.language_model(network(name, hidden), vocab, hidden, norm=True)
    return jrnn.language_model(network(name, hidden), vocab, embed)


def param_count(model: jrnn.LanguageModel) -> int:
    return _models.param_count(jax.eval_shape(model.init, jax.random.key(0)))


def hidden_for(name: str, target: int, vocab: int, embed: int) -> int:
    """The largest hidden size whose model has at most ``target`` parameters (so the models compare fairly); a
    multiple of 16 for a stack of blocks (their heads split the width)."""
    step = 16 if blocks(name) is not None else 1
    low, high = 1, 4096 // step
    while low < high:
        mid = (low + high + 1) // 2
        if param_count(build(name, mid * step, vocab, embed)) <= target:
            low = mid
        else:
            high = mid - 1
    return low * step


def evaluate(model, params, tokens, vocab: text.Vocabulary, chars: int, streams: int) -> float:
    """Bits per character of ``tokens`` (a held-out text of ``chars`` characters), the state carried."""
    bits = jrnn.bits_per_token(model, params, tokens, num_streams=streams, window=256)
    return text.code_length_bits(bits, tokens, vocab) / chars


def _valid_text(corpus: text.Corpus, config: dict) -> bytes:
    """The validation text the learning curves are measured on (a prefix of the split in the quick profile)."""
    return corpus.valid if config["valid_chars"] is None else corpus.valid[:config["valid_chars"]]


def train_model(name: str, config: dict, corpus: text.Corpus, vocab: text.Vocabulary, key: jax.Array) -> dict:
    hidden = hidden_for(name, config["params"], vocab.size, config["embed"])
    model = build(name, hidden, vocab.size, config["embed"])
    k_init, k_sample, k_dropout = jax.random.split(key, 3)
    params = model.init(k_init)
    inputs, targets = jrnn.stream_windows(vocab.encode(corpus.train), config["batch"], config["window"])
    per_step = config["batch"] * config["window"]
    steps = max(1, config["chars"] // per_step)
    schedule = optax.cosine_decay_schedule(config["lr"][name], steps, alpha=0.1)
    trainer = jrnn.train_step(jrnn.supervised_loss(model.apply, jrnn.masked_cross_entropy), optax.adam(schedule),
                              max_norm=config["max_norm"])
    opt_state = trainer.init(params)
    valid_text = _valid_text(corpus, config)
    valid_tokens, valid_chars = vocab.encode(valid_text), text.characters(valid_text)

    def valid_bpc(params):
        return evaluate(model, params, valid_tokens, vocab, valid_chars, config["eval_streams"])

    checkpoints = {round(steps * (i + 1) / config["evals"]) for i in range(config["evals"])}
    curve, compile_seconds, train_seconds, state = [], 0.0, 0.0, None
    clock = time.perf_counter()
    for i in _common.progress(range(steps), desc=f"char_lm {name}", total=steps):
        window = i % len(inputs)
        if window == 0:  # each stream starts over from its beginning, and from the zero state
            state = model.initial_state((config["batch"],))
        batch = jrnn.Batch(inputs[window], targets[window], initial_state=state)
        # The key draws dropout masks, one set per window, for the models that have dropout (no effect otherwise).
        params, opt_state, metrics = trainer.step(params, opt_state, batch, jax.random.fold_in(k_dropout, i))
        state = metrics["aux"]["final_state"]  # stopped gradient: the next window starts here
        if i == 0 or i + 1 in checkpoints:  # the clock runs over training only, the first (compiling) step apart
            jax.block_until_ready(params)
            if i == 0:
                compile_seconds = time.perf_counter() - clock
            else:
                train_seconds += time.perf_counter() - clock
            if i + 1 in checkpoints:
                curve.append(((i + 1) * per_step, valid_bpc(params)))
            clock = time.perf_counter()

    test_tokens = vocab.encode(corpus.test)
    test_bpc = evaluate(model, params, test_tokens, vocab, text.characters(corpus.test), config["test_streams"])
    prompt = vocab.encode(config["prompt"].encode("utf-8"))[None, :]
    samples = {}
    for temperature in config["temperatures"] if name in config["sample_models"] else ():
        tokens, _ = jrnn.generate(model, params, prompt, steps=config["sample_chars"], key=k_sample,
                                  temperature=temperature)
        samples[str(temperature)] = config["prompt"] + vocab.decode(tokens[0])
    return dict(model=name, hidden=hidden, params=param_count(model), test_bpc=test_bpc, valid_bpc=curve[-1][1],
                chars_seen=steps * per_step, chars_per_second=(steps - 1) * per_step / max(train_seconds, 1e-9),
                train_seconds=round(compile_seconds + train_seconds, 1), compile_seconds=round(compile_seconds, 1),
                curve=curve, samples=samples)


def _timed(function, *args):
    start = time.perf_counter()
    return function(*args), round(time.perf_counter() - start, 1)


def plot(rows: list[dict], baselines: dict, path: pathlib.Path) -> str:
    """Validation bits per character against characters seen, one line per model, the baselines on the same
    validation text (the training text as context) as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for row in rows:
        seen, bpc = zip(*row["curve"])
        ax.plot(np.asarray(seen) / 1e6, bpc, marker="o", markersize=3, label=f"{row['model']} ({row['params']:,})")
    styles = {"unigram": ":", "zlib -9": "--", "bz2 -9": "-.", "lzma -9e": (0, (1, 1))}
    for name, style in styles.items():
        ax.axhline(baselines[name]["with_train"], color="gray", linestyle=style, linewidth=1,
                   label=f"{name} {baselines[name]['with_train']:.2f}")
    top = max(max(b for _, b in row["curve"]) for row in rows)
    ax.set_ylim(bottom=min(1.0, ax.get_ylim()[0]), top=min(top, baselines["unigram"]["with_train"]) + 0.2)
    ax.set_xlabel("training characters seen (millions)")
    ax.set_ylabel("bits per character, validation text")
    ax.set_title("char-level LMs of the Python standard library")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path.name


def details(rows: list[dict], baselines: dict, corpus_info: dict, config: dict) -> str:
    """The report's extra Markdown: the baselines, the corpus, and the samples."""
    lines = [f"Corpus: Python {corpus_info['python']} standard library; "
             + ", ".join(f"{split} {corpus_info[split]['characters']:,} characters "
                         f"({len(corpus_info[split]['files'])} files)" for split in text.SPLITS) + ".", "",
             "| baseline (test text) | bits/char, train as context | alone |", "|---|---|---|"]
    lines += [f"| {name} | {value['with_train']:.3f} | {value['alone']:.3f} |" for name, value in baselines.items()]
    for row in rows:
        for temperature, sample in row["samples"].items():
            lines += ["", f"**{row['model']}**, temperature {temperature}, prompt {config['prompt']!r}:", "",
                      "```python", sample.replace("```", "'''"), "```"]
    return "\n".join(lines)


def run(profile: str, seed: int, out: pathlib.Path) -> dict:
    config = dict(PROFILES[profile], profile=profile, seed=seed)
    corpus = text.stdlib_corpus(limit=config["limit"])
    corpus_info = text.describe(corpus)
    config["corpus"] = corpus_info
    vocab = text.vocabulary(corpus.train)
    config["vocab_size"] = vocab.size
    cache = _common.RowCache(out, "char_lm", config)
    # The compressors release the GIL: they run on the second core while the first trains (batch 8 is one core).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(_timed, text.baselines, corpus.train,
                              {"test": corpus.test, "valid": _valid_text(corpus, config)})
        rows = []
        for i, name in enumerate(config["models"]):
            row = cache.get(name)
            if row is None:
                key = jax.random.fold_in(jax.random.key(seed), i)
                row = cache.put(name, train_model(name, config, corpus, vocab, key))
            rows.append(row)
        by_text, config["baseline_seconds"] = pending.result()
    baselines = by_text["test"]
    config["baselines"], config["valid_baselines"] = baselines, by_text["valid"]
    plots = [plot(rows, by_text["valid"], out / "char_lm.png")]
    bz2 = baselines["bz2 -9"]["with_train"]
    best = min(rows, key=lambda r: r["test_bpc"])
    summary = ("test bits/char: " + ", ".join(f"{r['model']} {r['test_bpc']:.3f}" for r in rows)
               + f"; zlib {baselines['zlib -9']['with_train']:.3f}, bz2 {bz2:.3f}, "
               f"lzma {baselines['lzma -9e']['with_train']:.3f} with the training text as context; "
               f"{best['model']} {'beats' if best['test_bpc'] < bz2 else 'does not beat'} bz2")
    result = _common.record("char_lm", config, rows, plots=plots, summary=summary)
    result["details"] = details(rows, baselines, corpus_info, config)
    return result

