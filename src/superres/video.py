"""Video files in and out with PyAV: the only module of superres that opens or writes them.

`transcode` streams a clip: it decodes a frame, hands it to a function (the upscaler) as a `Picture`, encodes the
result and goes on, so memory holds a few frames (the decoder's and encoder's own buffers), never the clip. Each
frame keeps its timestamp, so the frame rate, variable or not, is kept; the first audio stream is copied where the
output container takes its codec and re-encoded otherwise; other streams (subtitles, data) are left out. The
output is written under a temporary name in the target's folder and renamed once complete: an interruption or an
error leaves nothing behind. PyAV is optional: `pip install "superres[video]"`.

Pixels go through 8-bit RGB and the video is encoded as H.264 (VP9 for WebM) in 4:2:0, which needs even sizes:
an odd output width or height loses its last column or row.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from superres.files import atomic_write
from superres.imageio import Picture, picture_from_array, picture_to_array

VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi"})
INSTALL_HINT = 'pip install "superres[video]"'

_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mkv": "matroska", ".mov": "mov", ".webm": "webm", ".avi": "avi"}
_VIDEO_CODEC = {"webm": ("libvpx-vp9", {"crf": "30", "b": "0", "row-mt": "1"})}
_DEFAULT_VIDEO_CODEC = ("libx264", {"crf": "18", "preset": "medium", "rc-lookahead": "10"})  # lookahead: memory
_AUDIO_COPYABLE = {  # codecs each container takes as they are; None: any
    "mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"},
    "mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s24le"},
    "matroska": None,
    "webm": {"opus", "vorbis"},
    "avi": {"mp3", "ac3", "pcm_s16le"},
}
_AUDIO_CODEC = {"webm": "libopus", "avi": "mp3"}  # when the audio cannot be copied; else AAC


class VideoFileError(Exception):
    """A video that cannot be read or written; the message is one line naming the file."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    frames: int | None  # as the container declares it; None when it does not
    fps: Fraction | None
    audio: str | None  # the first audio stream's codec


@dataclass(frozen=True)
class VideoResult:
    frames: int
    size: tuple[int, int]  # (width, height)
    audio: str  # "none", "copied aac", "re-encoded opus to aac", ...


def is_video_path(path: str | os.PathLike) -> bool:
    """True when the suffix is one of VIDEO_SUFFIXES (any case); the file itself is not opened."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _av():
    try:
        import av
    except ImportError:
        raise VideoFileError(f"video needs PyAV, which is not installed: {INSTALL_HINT}") from None
    return av


def _one_line(error: BaseException) -> str:
    """FFmpeg's own words (`strerror`) without PyAV's errno and path, else the first line of the message."""
    text = (getattr(error, "strerror", None) or str(error)).strip().splitlines()
    return text[0] if text else type(error).__name__


def _open_input(path: Path):
    av = _av()
    if not path.is_file():
        raise VideoFileError(f"{path}: no such file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as error:
        raise VideoFileError(f"{path}: not a readable video ({_one_line(error)})") from None
    if not container.streams.video:
        container.close()
        raise VideoFileError(f"{path}: has no video stream")
    return container


def probe(path: str | os.PathLike, max_pixels: int) -> VideoInfo:
    """The size, declared frame count, frame rate and audio codec of a video; refuses frames over `max_pixels`."""
    path = Path(path)
    with _open_input(path) as container:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        info = VideoInfo(width, height, stream.frames or None, stream.average_rate, audio)
    if width * height > max_pixels:
        raise VideoFileError(f"{path}: frames are {width}x{height} ({width * height / 1e6:.1f} MP), over the limit "
                             f"of {max_pixels / 1e6:g} MP")
    return info


def transcode(
    source: str | os.PathLike,
    target: str | os.PathLike,
    process: Callable[[Picture], Picture],
    *,
    on_frame: Callable[[int], None] | None = None,
) -> VideoResult:
    """Write `target` with every video frame of `source` passed through `process` (an 8-bit RGB Picture in, one
    of any size out) and the audio kept. `on_frame(frames done)` reports progress."""
    source, target = Path(source), Path(target)
    container_format = _CONTAINERS.get(target.suffix.lower())
    if container_format is None:
        raise VideoFileError(f"{target}: cannot write '{target.suffix}' video (use {', '.join(sorted(_CONTAINERS))})")
    av = _av()
    outcome: dict[str, VideoResult] = {}
    with _open_input(source) as inputs:

        def write(file) -> None:
            with av.open(file, "w", format=container_format) as output:
                outcome["result"] = _Transcoder(av, inputs, output, container_format, process, on_frame).run()

        try:
            atomic_write(target, write)
        except (av.FFmpegError, ValueError) as error:
            raise VideoFileError(f"{source}: cannot transcode to {target} ({_one_line(error)})") from None
    return outcome["result"]


class _Transcoder:
    """One pass over an opened input: demux in file order, video frames through `process` into the encoder, audio
    copied or re-encoded. Output streams are added once the first frame shows the output size; audio packets that
    come before it wait (a few)."""

    def __init__(self, av, inputs, output, container_format: str, process, on_frame) -> None:
        self.av, self.inputs, self.output, self.format = av, inputs, output, container_format
        self.process, self.on_frame = process, on_frame
        self.video_in = inputs.streams.video[0]
        self.audio_in = inputs.streams.audio[0] if inputs.streams.audio else None
        self.video_out = self.audio_out = None
        self.copy_audio = False
        self.waiting: list = []  # audio packets demuxed before the output streams exist
        self.frames = 0

    def run(self) -> VideoResult:
        self.video_in.thread_type = "AUTO"
        streams = [s for s in (self.video_in, self.audio_in) if s is not None]
        for packet in self.inputs.demux(*streams):
            if packet.stream is self.video_in:
                for frame in packet.decode():
                    self._encode_frame(frame)
            elif self.video_out is None:
                self.waiting.append(packet)
            else:
                self._audio(packet)
        if self.video_out is None:
            raise ValueError("no video frame could be decoded")
        self._mux(self.video_out.encode())
        if self.audio_out is not None and not self.copy_audio:
            self._mux(self.audio_out.encode())
        return VideoResult(self.frames, (self.video_out.width, self.video_out.height), self._audio_note())

    def _encode_frame(self, frame) -> None:
        sr = self.process(picture_from_array(frame.to_ndarray(format="rgb24")))
        samples = picture_to_array(sr, np.uint8)  # (H, W, 3)
        samples = samples[: samples.shape[0] // 2 * 2, : samples.shape[1] // 2 * 2]  # 4:2:0 needs even sizes
        if samples.shape[0] == 0 or samples.shape[1] == 0:
            raise ValueError(f"an output frame of {sr.pixels.shape[-1]}x{sr.pixels.shape[-2]} is too small to encode")
        if self.video_out is None:
            self._add_streams(samples.shape[1], samples.shape[0])
        encoded = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(samples), format="rgb24")
        encoded.pts, encoded.time_base = frame.pts, frame.time_base  # the input's timing, frame by frame
        self._mux(self.video_out.encode(encoded))
        self.frames += 1
        if self.on_frame:
            self.on_frame(self.frames)

    def _add_streams(self, width: int, height: int) -> None:
        codec, options = _VIDEO_CODEC.get(self.format, _DEFAULT_VIDEO_CODEC)
        rate = self.video_in.average_rate or self.video_in.guessed_rate or Fraction(25)
        video = self.output.add_stream(codec, rate=rate, options=dict(options))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = self.video_in.time_base or Fraction(1, rate.numerator)
        self.video_out = video
        if self.audio_in is not None:
            copyable = _AUDIO_COPYABLE.get(self.format)
            self.copy_audio = copyable is None or self.audio_in.codec_context.name in copyable
            if self.copy_audio:
                self.audio_out = self.output.add_stream_from_template(self.audio_in)
            else:
                self.audio_out = self._audio_encoder()
        for packet in self.waiting:
            self._audio(packet)
        self.waiting.clear()

    def _audio_encoder(self):
        context = self.audio_in.codec_context
        codec = _AUDIO_CODEC.get(self.format, "aac")
        rate = 48000 if codec == "libopus" else context.sample_rate  # Opus takes 48 kHz and a few others only
        stream = self.output.add_stream(codec, rate=rate)
        stream.layout = context.layout.name if context.layout.nb_channels <= 2 else "stereo"
        return stream

    def _audio(self, packet) -> None:
        if packet.dts is None:  # the demuxer's empty flush packet
            return
        if self.copy_audio:
            packet.stream = self.audio_out
            self.output.mux(packet)
        else:
            for frame in packet.decode():
                frame.pts = None  # the encoder's resampler counts samples itself
                self._mux(self.audio_out.encode(frame))

    def _mux(self, packets) -> None:
        for packet in packets:
            self.output.mux(packet)

    def _audio_note(self) -> str:
        if self.audio_in is None:
            return "none"
        name = self.audio_in.codec_context.name
        return f"copied {name}" if self.copy_audio else f"re-encoded {name} to {self.audio_out.codec_context.name}"
