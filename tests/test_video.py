"""Video through the CLI: a tiny clip made here with PyAV (frames and a sine tone), upscaled, and checked."""

from __future__ import annotations

import sys
from fractions import Fraction

import numpy as np
import pytest

from superres import inference
from superres.cli import main

av = pytest.importorskip("av", reason="PyAV is not installed: pip install -e '.[video]'")

FRAMES, WIDTH, HEIGHT, RATE, SAMPLE_RATE = 8, 32, 24, 12, 16000


def make_clip(path, frames: int = FRAMES, audio: bool = True, noise: bool = False) -> None:
    """`frames` frames of WIDTH x HEIGHT at RATE fps (a moving gradient, or `noise`, which compresses badly) and,
    with `audio`, a 440 Hz tone as AAC."""
    with av.open(str(path), "w") as clip:
        video = clip.add_stream("libx264", rate=RATE)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        sound = clip.add_stream("aac", rate=SAMPLE_RATE) if audio else None
        if sound is not None:
            sound.layout = "mono"
        ramp = np.linspace(0, 255, WIDTH)[None, :, None] + np.zeros((HEIGHT, 1, 3))
        rng = np.random.default_rng(0)
        for i in range(frames):
            pixels = rng.integers(0, 256, ramp.shape) if noise else (ramp + 20 * i) % 256
            pixels = pixels.astype(np.uint8)
            clip.mux(video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        clip.mux(video.encode())
        if sound is None:
            return
        tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE * frames // RATE) / SAMPLE_RATE)
        for start in range(0, len(tone), 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, start : start + 1024].astype(np.float32), format="flt",
                                               layout="mono")
            frame.sample_rate, frame.pts = SAMPLE_RATE, start
            clip.mux(sound.encode(frame))
        clip.mux(sound.encode())


def describe(path) -> dict:
    with av.open(str(path)) as clip:
        video = clip.streams.video[0]
        found = {"size": (video.codec_context.width, video.codec_context.height), "rate": video.average_rate,
                 "audio": None}
        if clip.streams.audio:
            sound = clip.streams.audio[0]
            found["audio"] = (sound.codec_context.name, sound.sample_rate)
        found["frames"] = sum(1 for _ in clip.decode(video=0))
    with av.open(str(path)) as clip:
        found["audio_seconds"] = sum(f.samples for f in clip.decode(audio=0)) / found["audio"][1] if found["audio"] else 0
    return found


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.mp4"
    make_clip(path)
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_upscale_a_clip_keeps_frames_rate_and_audio(clip, tmp_path, capsys):
    source = describe(clip)
    assert source["frames"] == FRAMES and source["audio"] == ("aac", SAMPLE_RATE)
    target = tmp_path / "out" / "clip_x4.mp4"
    code, out, err = run(capsys, "upscale", clip, "-o", target, "--model", "bicubic")
    assert code == 0, err
    assert out == f"{target}: x4 with bicubic, 8 frames of 128x96, audio copied aac\n"
    result = describe(target)
    assert result["size"] == (WIDTH * 4, HEIGHT * 4) and result["frames"] == FRAMES
    assert result["rate"] == Fraction(RATE) and result["audio"] == ("aac", SAMPLE_RATE)
    assert abs(result["audio_seconds"] - source["audio_seconds"]) < 1e-3
    assert [p.name for p in target.parent.iterdir()] == ["clip_x4.mp4"]  # no temporary file left


def test_outscale_and_another_container_reencode_the_audio(clip, tmp_path, capsys):
    target = tmp_path / "clip.webm"
    code, out, err = run(capsys, "upscale", clip, "-o", target, "--model", "bicubic", "--outscale", "2.5")
    assert code == 0, err
    assert out.endswith("8 frames of 80x60, audio re-encoded aac to libopus\n")
    result = describe(target)
    assert result["size"] == (80, 60) and result["frames"] == FRAMES and result["audio"][0] == "opus"


def test_frames_are_streamed_not_gathered(tmp_path, monkeypatch):
    """Encoded frames reach the output file while later frames are still being upscaled: its temporary file grows
    between the 30th and the 60th (last) frame, and holds a good part of the clip before the last one."""
    path = tmp_path / "long.mp4"
    make_clip(path, frames=60, audio=False, noise=True)
    original, calls, written = inference.upscale_picture, [], {}

    def watching(model, picture, **options):
        calls.append(1)
        if len(calls) in (30, 60):
            written[len(calls)] = sum(p.stat().st_size for p in tmp_path.glob(".out.mp4.partial-*"))
        return original(model, picture, **options)

    monkeypatch.setattr(inference, "upscale_picture", watching)
    assert main(["upscale", str(path), "-o", str(tmp_path / "out.mp4"), "--model", "bicubic"]) == 0
    assert len(calls) == 60 and 0 < written[30] < written[60]
    assert written[60] > (tmp_path / "out.mp4").stat().st_size / 4


def test_ctrl_c_leaves_no_partial_output(clip, tmp_path, capsys, monkeypatch):
    original, calls = inference.upscale_picture, []

    def interrupted_at_frame_4(model, picture, **options):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original(model, picture, **options)

    monkeypatch.setattr(inference, "upscale_picture", interrupted_at_frame_4)
    code, out, err = run(capsys, "upscale", clip, "-o", tmp_path / "out" / "clip_x4.mp4", "--model", "bicubic")
    assert code == 130 and err.startswith("superres: error: interrupted") and err.count("\n") == 1
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("problem, expected", [
    ("not a video", "not a readable video (Invalid data found when processing input)"),
    ("image as video output", "a video output needs a video input"),
    ("video as image output", "is a video: write it as .avi, .m4v, .mkv, .mov, .mp4, .webm"),
    ("too many pixels", "frames are 32x24 (0.0 MP), over the limit of 0.0005 MP"),
])
def test_bad_video_input_is_one_line_and_exit_2(clip, tmp_path, capsys, problem, expected):
    source, target, extra = clip, tmp_path / "out.mp4", []
    if problem == "not a video":
        source = tmp_path / "junk.mp4"
        source.write_bytes(b"this is not a video" * 10)
    elif problem == "image as video output":
        from PIL import Image

        source = tmp_path / "photo.png"
        Image.new("RGB", (8, 8)).save(source)
    elif problem == "video as image output":
        target = tmp_path / "out.png"
    else:
        extra = ["--max-pixels", "500"]
    code, out, err = run(capsys, "upscale", source, "-o", target, "--model", "bicubic", *extra)
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("superres: error: "), err
    assert expected in err
    assert not target.exists() and not list(tmp_path.glob(".*partial*"))


def test_without_pyav_video_names_the_extra(clip, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # as if not installed
    code, _, err = run(capsys, "upscale", clip, "-o", tmp_path / "out.mp4", "--model", "bicubic")
    assert code == 2 and err == 'superres: error: video needs PyAV, which is not installed: pip install "superres[video]"\n'
