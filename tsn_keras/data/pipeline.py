"""``make_dataset``: TSN clips from the shards written by ``tsn convert``, as a ``tf.data.Dataset``.

Stages (``docs/DESIGN.md``, "Input pipeline contract"):

1. epoch: one key per pass over the data, a pure function of (seed, epoch number), so a
   stream can begin at any epoch (a resumed training run); from it the shard order, the order of
   each shard's records, the example shuffle and every clip's sampling and augmentation seeds
   derive, so the same seed gives the same batches (``epochs``);
2. references: shards in a (per epoch shuffled) order, each shard's records in a (per epoch
   shuffled) order, interleaved; for the indexed reader a video is a small reference (shard,
   record, label, frame count); the streamed reader parses each record here and keeps only the
   sampled JPEG strings (a shard's are held in memory to be reordered);
3. clip: sample frame indices, fetch those JPEG byte ranges (indexed reader: one
   ``tf.numpy_function`` per group of clips over memory-mapped shards), decode, crop, flip and normalise
   in the graph (``clips.ClipSpec``);
4. errors: a clip that cannot be read raises an error naming the shard and video, or is skipped
   and counted (``skip_corrupt``);
5. batch and prefetch.

Every clip's randomness is a function of (epoch key, shard, record), not of the reading order,
so both readers give identical tensors and parallel reading does not change the result.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tsn_keras.data import epochs, failures, reader
from tsn_keras.data.clips import ClipSpec
from tsn_keras.data.failures import CorruptCounter
from tsn_keras.data.reader import parse_video
from tsn_keras.errors import ConfigError
from tsn_keras.vocab import READ_MODES, check_choice

__all__ = ["ClipSpec", "CorruptCounter", "count_videos", "dataset_from_config", "make_dataset", "test_views"]

AUTOTUNE = tf.data.AUTOTUNE
_MAX_CYCLE = 8  # shards read at once: enough to mix classes across shards in a small shuffle buffer
# Clips whose JPEG bytes one call into Python fetches (indexed reader): a call costs about as much
# as decoding a frame, so fetching clip by clip took an eighth of the train-mode throughput.
_FETCH_GROUP = 16


def make_dataset(source, clip: ClipSpec, *, split: str | None = None, batch_size: int = 8, seed: int | None = None,
                 shuffle_buffer: int = 64, repeat: bool = False, drop_remainder: bool | None = None,
                 input_context=None, skip_corrupt=False, return_ids: bool = False,
                 read_mode: str = "auto", start: int = 0) -> tf.data.Dataset:
    """Batches of TSN clips from converted shards.

    Args:
        source: a conversion folder (with ``split``), a shard path or a list of shard paths.
        clip: what a clip looks like (modality, mode, K or T x crops, L, size, augmentation,
            normalisation): a ``ClipSpec``, by hand, ``ClipSpec.from_config`` for a recipe, or
            ``evaluation.test_clip_spec`` for a trained model.
        split: the split of a conversion folder (``"train"``, ``"val"``, ``"test"``).
        batch_size: clips per batch (per replica when ``input_context`` is given).
        input_size: side of the square network input.
        seed: same seed, same batches; each epoch (or re-iteration) differs. ``None``: random.
        shuffle_buffer: examples in the shuffle buffer (train), after the shard-order shuffle.
        repeat: repeat forever, a new epoch key each pass.
        drop_remainder: ``None`` drops the last partial batch in train mode only.
        input_context: a ``tf.distribute.InputContext``: this pipeline reads its own shards (or
            its own videos when there are fewer shards than pipelines).
        skip_corrupt: ``False`` raises on a corrupt record or JPEG, naming shard and video;
            ``True`` (or a ``CorruptCounter``) skips such clips, counts them and logs a warning.
        return_ids: append the ``video_id`` string to each element.
        read_mode: ``auto`` (the byte index when every shard is local and has one, else
            ``stream``), ``index`` or ``stream``.
        start: with ``repeat``, begin this many clips into the stream (of this pipeline): a
            resumed training run continues the data stream of the run it continues. Exact
            when no clip was skipped as corrupt before that point.

    Returns:
        A dataset of ``(x, label)`` (or ``(x, label, video_id)``): ``x`` float32
        ``(B, K, S, S, C)`` in train/val, ``(B, num_crops * T, S, S, C)`` crop-major in test
        (with ``clip.device_resize``: ``{"crops", "crop_size"}`` for ``ClipSpec.device_views``);
        ``label`` int32 ``(B,)``. Its ``corrupt_counter`` attribute is the ``CorruptCounter``
        (``None`` unless skipping).

    Example:
        >>> ds = make_dataset("data/ucf101", ClipSpec("flow"), split="train", seed=0)  # doctest: +SKIP
        >>> x, y = next(iter(ds))  # doctest: +SKIP  x: (8, 3, 224, 224, 10)
    """
    if not isinstance(clip, ClipSpec):
        raise ConfigError(f"clip must be a ClipSpec (what a clip looks like), got {type(clip).__name__}")
    spec, mode = clip, clip.mode
    for name, value in (("batch_size", batch_size), ("shuffle_buffer", shuffle_buffer)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    check_choice("read_mode", read_mode, READ_MODES)
    if isinstance(start, bool) or not isinstance(start, int) or start < 0 or (start and not repeat):
        raise ConfigError(f"start must be an integer >= 0, and only with repeat=True; got {start!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"seed must be an integer or None, got {seed!r}")
    if isinstance(skip_corrupt, bool):
        counter = CorruptCounter() if skip_corrupt else None
    elif isinstance(skip_corrupt, CorruptCounter):
        counter = skip_corrupt
    else:
        raise ConfigError(f"skip_corrupt must be true, false or a CorruptCounter, got {skip_corrupt!r}")
    paths, manifest = reader.resolve_shards(source, split)
    if manifest is not None and manifest.get("stored_keys"):
        missing = [k for k in spec.keys if k not in manifest["stored_keys"]]
        if missing:
            raise ConfigError(f"modality {spec.modality!r} needs {missing[0]!r} frames, but {source} stores only "
                              f"{', '.join(manifest['stored_keys'])}")
    reader.check_shard_sizes(paths, manifest, split, skipping=counter is not None)
    indexed = all(reader.has_local_index(p) for p in paths)
    if read_mode == "index" and not indexed:
        bad = next(p for p in paths if not reader.has_local_index(p))
        raise ConfigError(f"read_mode 'index' needs local shards with a byte index; {bad} has none "
                          "(use read_mode 'auto' or 'stream')")
    use_index = read_mode == "index" or (read_mode == "auto" and indexed)

    shard_ids, element_split = _distribute(len(paths), input_context)
    graph = _DatasetGraph(spec, paths, shard_ids, element_split, seed, shuffle_buffer if mode == "train" else 0,
                         start)
    if use_index:
        clips = graph.indexed(reader.IndexedShards(paths, spec.keys), repeat)
    else:
        expected = reader.expected_records(paths, manifest, split)
        clips = graph.streamed(None if min(expected) < 0 else expected, repeat)

    clips = failures.report_failures(clips, counter)
    clips = clips.map(lambda e: (e["x"], e["label"], e["video_id"]) if return_ids else (e["x"], e["label"]))
    drop = (mode == "train") if drop_remainder is None else bool(drop_remainder)
    # device_resize clips are crops of different sizes: zero-padded to the largest of the batch.
    batched = (clips.padded_batch(batch_size, drop_remainder=drop) if spec.device_resize
               else clips.batch(batch_size, drop_remainder=drop))
    dataset = batched.prefetch(AUTOTUNE)
    dataset.corrupt_counter = counter
    return dataset


def _distribute(num_shards: int, input_context) -> tuple[list[int], tuple[int, int] | None]:
    """This pipeline's shards, and ``(pipelines, id)`` when videos must be split instead."""
    if input_context is None or input_context.num_input_pipelines <= 1:
        return list(range(num_shards)), None
    pipelines, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
    if num_shards >= pipelines:
        return list(range(pipeline_id, num_shards, pipelines)), None
    return list(range(num_shards)), (pipelines, pipeline_id)


class _DatasetGraph:
    """The dataset graph of one ``make_dataset`` call, for either reader."""

    def __init__(self, spec: ClipSpec, paths, shard_ids, element_split, seed, shuffle_buffer, start=0):
        self.spec, self.paths, self.shard_ids = spec, paths, shard_ids
        self.element_split, self.seed, self.shuffle_buffer = element_split, seed, shuffle_buffer
        self.start = start
        # Every epoch key derives from this and the epoch number (no seed: a random base).
        self.base = seed if seed is not None else int(np.random.SeedSequence().entropy % (1 << 62))
        # Ordered output when results must be reproducible; otherwise let fast clips overtake.
        self.deterministic = seed is not None or spec.mode != "train"
        self.path_table = tf.constant(paths)
        self.cycle = min(len(shard_ids), _MAX_CYCLE)

    # --- epochs and shard order ----------------------------------------------------------

    def _epochs(self, repeat: bool, epoch_fn, per_epoch: int | None = None) -> tf.data.Dataset:
        return epochs.epoch_stream(self.base, epoch_fn, repeat=repeat, start=self.start, per_epoch=per_epoch)

    def _shard_order(self, key) -> tf.Tensor:
        if self.spec.mode != "train":
            return tf.constant(self.shard_ids, tf.int64)
        return epochs.shard_order(key, self.shard_ids)

    def _shuffle(self, ds, key):
        return epochs.block_shuffle(ds, key, self.shuffle_buffer) if self.shuffle_buffer else ds

    def _read_by_this_pipeline(self, shard_id, record) -> tf.Tensor:
        if self.element_split is None:
            return tf.constant(True)
        pipelines, pipeline_id = self.element_split
        return tf.equal((tf.cast(shard_id, tf.int64) + record) % pipelines, pipeline_id)

    # --- the two readers -------------------------------------------------------------------

    def indexed(self, shards: reader.IndexedShards, repeat: bool) -> tf.data.Dataset:
        spec, videos = self.spec, shards.videos
        keep = np.isin(videos["shard_id"], self.shard_ids)
        if self.element_split is not None:
            pipelines, pipeline_id = self.element_split
            keep &= (videos["shard_id"] + videos["record"]) % pipelines == pipeline_id
        videos = {name: column[keep] for name, column in videos.items()}
        starts = np.searchsorted(videos["shard_id"], np.arange(len(self.paths)))
        ends = np.searchsorted(videos["shard_id"], np.arange(len(self.paths)), side="right")
        table = {name: tf.constant(column) for name, column in videos.items()}
        bounds = tf.constant(np.stack([starts, ends], 1).astype(np.int64))

        def ref(key, row):
            e = {"key": key, **{name: column[row] for name, column in table.items()}}
            seed = epochs.element_seed(key, e["shard_id"], e["record"])
            frames = spec.frame_indices(e["count"], tf.random.experimental.stateless_fold_in(seed, 0))
            return {**e, "seed": seed, "frames": frames}

        def refs(key, shard_id):
            start, count = bounds[shard_id][0], bounds[shard_id][1] - bounds[shard_id][0]
            order = epochs.record_order(key, shard_id, count) if spec.mode == "train" else tf.range(count)
            return tf.data.Dataset.from_tensor_slices(start + order).map(lambda row: ref(key, row))

        def epoch(key):
            order = tf.data.Dataset.from_tensor_slices(self._shard_order(key))
            videos = order.interleave(lambda s: refs(key, s), cycle_length=self.cycle, block_length=1)
            return self._shuffle(videos, key)

        def fetch(group):
            n, shape = tf.shape(group["record"])[0], [len(spec.keys), spec.frames_per_clip]
            jpegs, fetched = reader.PYTHON_CALLS.call(
                shards.fetch_many, [group["shard_id"], group["record"], group["frames"]], [tf.string, tf.bool],
                lambda: [tf.fill(tf.concat([[n], shape], 0), ""), tf.zeros([n], tf.bool)])
            return {**group, "jpegs": tf.ensure_shape(jpegs, [None, *shape]),
                    "fetched": tf.ensure_shape(fetched, [None])}

        def load(e):
            # An unfetchable clip fails here, inside the failure tracking, which names or skips it.
            with tf.control_dependencies([tf.debugging.Assert(e["fetched"], [e["video_id"]])]):
                jpegs = tf.identity(e["jpegs"])
            return self._clip(e, spec.make_views(jpegs, e["seed"]), True)

        # The byte ranges of _FETCH_GROUP clips in one call into Python, in order.
        per_epoch = len(videos["record"])
        videos = self._epochs(repeat, epoch, per_epoch).batch(_FETCH_GROUP).map(
            fetch, num_parallel_calls=AUTOTUNE, deterministic=self.deterministic).unbatch()
        return failures.map_keeping_failures(videos, load, self._empty_clip, self._unreadable_clips,
                                             self.deterministic)

    def streamed(self, expected: list[int] | None, repeat: bool) -> tf.data.Dataset:
        spec, keys = self.spec, self.spec.keys
        expected_table = tf.constant(expected if expected is not None else [-1] * len(self.paths), tf.int64)

        def shard_records(key, shard_id):
            stream = reader.stream_records(self.path_table[shard_id],
                                           None if expected is None else expected_table[shard_id])
            # Only one pipeline reports a shard's unreadable tail.
            stream = stream.filter(
                lambda e: tf.where(e["end"], self._read_by_this_pipeline(shard_id, 0), self._read_by_this_pipeline(shard_id, e["record"])))
            return stream.map(lambda e: {"key": key, "shard_id": shard_id, **e})

        def parse(e):
            context, sequences = parse_video(e["serialized"], keys)
            count = tf.shape(sequences[keys[0]])[0]
            seed = epochs.element_seed(e["key"], e["shard_id"], e["record"])
            frames = spec.frame_indices(count, tf.random.experimental.stateless_fold_in(seed, 0))
            jpegs = tf.stack([tf.gather(sequences[k], frames) for k in keys])
            return self._parsed(e, tf.cast(context["label"], tf.int32), context["video_id"], jpegs, True, 0, "")

        def parse_or_report_loss(e):
            return tf.cond(e["end"], lambda: self._lost_tail(e, expected_table), lambda: parse(e))

        def no_record(e):
            return self._parsed(e, tf.constant(-1, tf.int32), tf.constant(""),
                                tf.fill([len(keys), spec.frames_per_clip], ""), False, 0, "")

        def unparsable(chunk, positions):
            shards = tf.gather(self.path_table, tf.gather(chunk["shard_id"], positions))
            records = tf.strings.as_string(tf.gather(chunk["record"], positions))
            return tf.strings.join(["corrupt data in shard ", shards, ": record ", records, " does not parse"])

        def shard_clips(key, shard_id):
            parsed = failures.map_keeping_failures(shard_records(key, shard_id), parse_or_report_loss, no_record,
                                                   unparsable, self.deterministic)
            # Keep only clips and reports of lost ones: the same sequence as the indexed reader's
            # references, so that the record order, the shuffle and everything after them match.
            clips = parsed.filter(lambda e: tf.logical_or(e["ok"], e["lost"] > 0))
            return epochs.in_record_order(clips, key, shard_id) if spec.mode == "train" else clips

        def epoch(key):
            order = tf.data.Dataset.from_tensor_slices(self._shard_order(key))
            clips = order.interleave(lambda s: shard_clips(key, s), cycle_length=self.cycle, block_length=1,
                                     num_parallel_calls=AUTOTUNE, deterministic=self.deterministic)
            return self._shuffle(clips, key)

        def load(e):
            seed = epochs.element_seed(e["key"], e["shard_id"], e["record"])
            x = tf.cond(e["ok"], lambda: spec.make_views(e["jpegs"], seed), spec.empty_views)
            return self._clip(e, x, e["ok"], e["lost"], e["what"])

        return failures.map_keeping_failures(self._epochs(repeat, epoch), load, self._empty_clip,
                                             self._unreadable_clips, self.deterministic)

    # --- element structures --------------------------------------------------------------

    def _parsed(self, e, label, video_id, jpegs, ok, lost, what) -> dict:
        return {"key": e["key"], "shard_id": e["shard_id"], "record": e["record"], "label": label,
                "video_id": video_id, "jpegs": jpegs, "ok": tf.convert_to_tensor(ok),
                "lost": tf.cast(lost, tf.int64), "what": tf.convert_to_tensor(what, tf.string)}

    def _lost_tail(self, e, expected_table) -> dict:
        expected = expected_table[e["shard_id"]]
        what = tf.strings.join([
            "corrupt data in shard ", self.path_table[e["shard_id"]], ": records ", tf.strings.as_string(e["read"]),
            " to ", tf.strings.as_string(expected - 1), " of ", tf.strings.as_string(expected),
            " are unreadable (corrupt or truncated record)"])
        return self._parsed(e, tf.constant(-1, tf.int32), tf.constant(""),
                            tf.fill([len(self.spec.keys), self.spec.frames_per_clip], ""), False,
                            expected - e["read"], what)

    def _clip(self, e, x, ok, lost=0, what="") -> dict:
        """A clip (``ok``) or a marker that carries ``lost`` unreadable clips described by ``what``."""
        return {"x": self.spec.ensure_views(x), "label": e["label"], "video_id": e["video_id"],
                "ok": tf.convert_to_tensor(ok), "lost": tf.cast(lost, tf.int64),
                "what": tf.convert_to_tensor(what, tf.string)}

    def _empty_clip(self, e) -> dict:
        return self._clip(e, self.spec.empty_views(), False)

    def _unreadable_clips(self, chunk, positions) -> tf.Tensor:
        shards = tf.gather(self.path_table, tf.gather(chunk["shard_id"], positions))
        videos = tf.gather(chunk["video_id"], positions)
        records = tf.strings.as_string(tf.gather(chunk["record"], positions))
        return tf.strings.join(["corrupt data in shard ", shards, ": video ", videos, " (record ", records,
                                ") cannot be read or decoded (corrupt record or JPEG)"])


# --- config and test-time entry points ------------------------------------------------------

def dataset_from_config(data_cfg, mode: str, batch_size: int, normalization: str, *, seed=None,
                        input_context=None, num_snippets: int = 25, num_crops: int = 1, repeat: bool = False,
                        return_ids: bool = False, start: int = 0) -> tf.data.Dataset:
    """``make_dataset`` for a recipe's ``data`` section (``config.DataConfig``).

    ``mode`` picks the split: ``train`` -> ``data.train_split``, ``val`` -> ``data.val_split``,
    ``test`` -> ``data.test_split``. ``normalization`` is a resolved preset (not ``"auto"``).
    """
    splits = {"train": data_cfg.train_split, "val": data_cfg.val_split, "test": data_cfg.test_split}
    check_choice("mode", mode, tuple(splits))
    if splits[mode] is None:
        raise ConfigError(f"data.{mode}_split is null: this recipe has no {mode} split")
    if not data_cfg.root:
        raise ConfigError("data.root is empty: set it to the folder written by `tsn convert`")
    clip = ClipSpec.from_config(data_cfg, mode, normalization, num_snippets=num_snippets, num_crops=num_crops)
    return make_dataset(data_cfg.root, clip, split=splits[mode], batch_size=batch_size, seed=seed,
                        shuffle_buffer=data_cfg.shuffle_buffer, repeat=repeat, input_context=input_context,
                        skip_corrupt=data_cfg.skip_corrupt, return_ids=return_ids, start=start)


def count_videos(source, split=None) -> int:
    """Videos in a split of a conversion folder, or in a list of shard files."""
    paths, manifest = reader.resolve_shards(source, split)
    if manifest is not None:
        return int(manifest["splits"][split]["videos"])
    counts = reader.expected_records(paths, None, None)
    return sum(n if n >= 0 else int(tf.data.TFRecordDataset(p).reduce(0, lambda c, _: c + 1))
               for p, n in zip(paths, counts))


def test_views(frames, clip: ClipSpec, num_frames=None) -> tf.Tensor:
    """The test-time views of one video from all its JPEG frames (graph code; used by the export).

    Samples ``clip.num_snippets`` snippets at the segment centres, decodes only their frames,
    cuts ``clip.num_crops`` crops and normalises, exactly as ``make_dataset`` with that test spec.

    Args:
        frames: the video's JPEG strings: a 1-D string tensor for ``rgb``/``rgb_diff``; for flow
            the x and y components as a pair ``(flow_x, flow_y)`` (or a mapping by stored key).
        clip: a test-mode ``ClipSpec``.
        num_frames: frames to sample from (flow: fields); ``None`` for the length of ``frames``.

    Returns:
        float32 ``[num_crops * num_snippets, S, S, C]``, crop-major.
    """
    if clip.mode != "test":
        raise ConfigError(f"test_views needs a test-mode ClipSpec, got mode {clip.mode!r}")
    spec, modality = clip, clip.modality
    if isinstance(frames, dict):
        missing = [k for k in spec.keys if k not in frames]
        if missing:
            raise ConfigError(f"modality {modality!r} needs frames {', '.join(spec.keys)}; "
                              f"{missing[0]!r} is missing")
        per_key = [frames[k] for k in spec.keys]
    elif len(spec.keys) == 1:
        per_key = [frames]
    else:
        per_key = list(frames)
    if len(per_key) != len(spec.keys):
        raise ConfigError(f"modality {modality!r} needs {len(spec.keys)} frame lists ({', '.join(spec.keys)}), "
                          f"got {len(per_key)}")
    per_key = [tf.convert_to_tensor(f, tf.string) for f in per_key]
    if num_frames is None:
        num_frames = tf.shape(per_key[0])[0]
    indices = spec.frame_indices(num_frames)
    return spec.make_views(tf.stack([tf.gather(f, indices) for f in per_key]))
