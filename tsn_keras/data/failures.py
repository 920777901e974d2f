"""Clips that cannot be read: found without losing their identity, then reported or skipped.

A failing op inside ``Dataset.map`` (a JPEG that does not decode, a byte range past the end of
a truncated shard, a record that does not parse) stops the whole iteration with an error that
does not say which video it was. ``map_keeping_failures`` maps chunks of elements in small
datasets that drop failures, and notes which positions went missing and what they were;
``report_failures`` then raises an error naming the shard and the video, or, with
``skip_corrupt``, skips them and counts them in a ``CorruptCounter``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from tsn_keras.data.reader import PYTHON_CALLS

log = logging.getLogger("tsn_keras.data.pipeline")

# Elements tried together: one small dataset per chunk instead of one per clip. Measured with
# benchmarks.bench_pipeline: 8 cost ~0.3 ms of CPU per clip (~15% of train-mode throughput),
# 32 is within noise of a plain parallel map.
_CHUNK = 32


@dataclass
class CorruptCounter:
    """Clips skipped with ``skip_corrupt=True``: ``count`` and the first few as ``examples``.

    Read it after (or during) iteration, from ``dataset.corrupt_counter`` or from the counter
    passed as ``skip_corrupt``.
    """

    count: int = 0
    examples: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, what, lost) -> np.bool_:
        """Count ``lost`` skipped clips described by ``what`` (called from the graph); returns False."""
        what = what.decode("utf-8", "replace") if isinstance(what, bytes) else str(what)
        with self._lock:
            self.count += int(lost)
            if len(self.examples) < 20:
                self.examples.append(what)
            total = self.count
        log.warning("skipped unreadable data (%d so far): %s", total, what)
        return np.bool_(False)


def without_autograph(fn):
    """``fn`` traced as written: it has no Python control flow on tensors for AutoGraph to
    rewrite, and skipping the conversion makes building a dataset faster."""
    return tf.autograph.experimental.do_not_convert(fn)


def map_keeping_failures(ds: tf.data.Dataset, fn, empty, describe, deterministic: bool) -> tf.data.Dataset:
    """``ds.map(fn)`` in parallel and in order, keeping track of elements whose ``fn`` fails.

    Each chunk of elements is mapped in its own small dataset that drops failures
    (``ignore_errors``); the positions that went missing are added to the next output's
    ``lost`` count and described (``describe(chunk, positions)`` -> strings) in its ``what``.
    Each chunk ends with an ``empty(element)`` marker (``ok`` false) that carries the failures
    at its end. Every ``fn`` output holds ``ok``, ``lost`` (int64) and ``what`` (string), so
    that elements which already carry a loss pass it on.
    """
    def chunk_outputs(chunk):
        size = tf.shape(tf.nest.flatten(chunk)[0], out_type=tf.int64)[0]
        mapped = tf.data.Dataset.from_tensor_slices(chunk).enumerate().map(without_autograph(lambda i, e: (i, fn(e))))
        end = {**empty(tf.nest.map_structure(lambda t: t[0], chunk)), "ok": tf.constant(False)}
        stream = mapped.ignore_errors().concatenate(tf.data.Dataset.from_tensors((size, end)))

        def account(expected, item):
            position, out = item

            def noted():
                notes = tf.concat([describe(chunk, tf.range(expected, position)), tf.reshape(out["what"], [1])], 0)
                return tf.strings.reduce_join(tf.boolean_mask(notes, tf.strings.length(notes) > 0), separator="; ")

            # The string work only when something went missing: the common case stays cheap.
            what = tf.cond(position > expected, noted, lambda: out["what"])
            return position + 1, {**out, "lost": out["lost"] + position - expected, "what": what}

        return stream.scan(tf.constant(0, tf.int64), without_autograph(account))

    # block_length covers a whole chunk and its marker, so the output keeps the input's order.
    return ds.batch(_CHUNK).interleave(without_autograph(chunk_outputs), block_length=_CHUNK + 1,
                                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def report_failures(ds: tf.data.Dataset, counter: CorruptCounter | None) -> tf.data.Dataset:
    """Raise on the losses noted by ``map_keeping_failures`` (or count them into ``counter``),
    and keep only the clips."""
    if counter is not None:
        def keep(e):
            def report():
                counted = PYTHON_CALLS.call(counter.record, [e["what"], e["lost"]], tf.bool, lambda: tf.constant(False),
                                    stateful=True)
                return tf.reshape(counted, [])

            reported = tf.cond(e["lost"] > 0, report, lambda: tf.constant(False))
            with tf.control_dependencies([reported]):
                return tf.identity(e["ok"])

        return ds.filter(without_autograph(keep))

    def check(e):
        message = tf.strings.join([e["what"], "; make_dataset(skip_corrupt=True) (data.skip_corrupt: true) "
                                              "skips such clips"])
        with tf.control_dependencies([tf.debugging.Assert(tf.equal(e["lost"], 0), [message], summarize=1)]):
            return {**e, "ok": tf.identity(e["ok"])}

    return ds.map(without_autograph(check)).filter(lambda e: e["ok"])
