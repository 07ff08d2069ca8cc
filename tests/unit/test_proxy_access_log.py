"""Following the proxy's access log between gate evaluations: only new bytes, across rotation and
truncation, with the same stats as reading everything nginx wrote."""

import os

from elearn.serving.gates import stats_from_access_log, stats_from_attempts
from elearn.serving.proxy import AccessLogReader

UPSTREAMS = {"127.0.0.1:9001": 1, "127.0.0.1:9002": 2}


def log_lines(start: int, n: int) -> str:
    """``n`` lines one second apart from ``start``: both versions, 2xx, 4xx, 5xx and no answer."""
    out = []
    for i in range(n):
        addr = "127.0.0.1:9002" if i % 3 == 0 else "127.0.0.1:9001"
        status = (200, 404, 502, 200, 200)[i % 5]
        rt = "-" if i % 11 == 5 else f"0.0{10 + i % 7}"
        out.append(f"{start + i}.000 {addr} {status} {rt} {status if rt != '-' else '-'}\n")
    return "".join(out)


def read(reader, since):
    return stats_from_attempts(reader.attempts_since(since), UPSTREAMS, since)


def whole(texts, since):
    return stats_from_access_log("".join(texts).splitlines(), UPSTREAMS, since)


def append(path, text):
    with open(path, "a") as f:
        f.write(text)


def test_reader_reads_only_what_was_appended_and_agrees_with_a_whole_read(tmp_path):
    log = tmp_path / "access.log"
    assert AccessLogReader(tmp_path / "never" / "access.log", "release-1").attempts_since(0) == []  # no proxy yet
    assert AccessLogReader(log, "release-1").attempts_since(0) == []  # nginx has written nothing yet
    first = log_lines(1000, 50)
    log.write_text(first)
    reader = AccessLogReader(log, "release-1")
    assert read(reader, 1000) == whole([first], 1000) and reader.bytes_read == len(first)

    second, partial = log_lines(1050, 30), "1080.000 127.0.0.1:90"
    append(log, second + partial)  # nginx is in the middle of a line: it is left for the next look
    reader = AccessLogReader(log, "release-1")  # another process (the CLI, a new triggerer): state on disk
    assert read(reader, 1000) == whole([first, second], 1000) and reader.bytes_read == len(second)

    rest = "02 404 0.011 404\n"
    append(log, rest)
    assert read(reader, 1000) == whole([first, second, partial + rest], 1000)
    assert reader.bytes_read == len(partial + rest)

    # the window slides forward: older attempts drop out, nothing is read again
    assert read(reader, 1040) == whole([first, second, partial + rest], 1040) and reader.bytes_read == 0
    # another release's reader starts over
    other = AccessLogReader(log, "release-2")
    assert read(other, 1000) == whole([first, second, partial + rest], 1000)
    assert other.bytes_read == log.stat().st_size


def test_reader_rotates_the_log_and_follows_it_across_rotation_and_truncation(tmp_path):
    log, rotated = tmp_path / "access.log", tmp_path / "access.log.1"
    reopened = []
    reader = AccessLogReader(log, "release-1", rotate_at=1000, reopen=lambda: reopened.append(True))
    written = [log_lines(1000, 40)]
    log.write_text(written[-1])
    assert read(reader, 1000) == whole(written, 1000)
    # past rotate_at: renamed, nginx told to reopen its logs
    assert not log.exists() and rotated.read_text() == written[0] and reopened == [True]

    # nginx still wrote a few lines to the renamed file before it reopened, then to a new one
    written.append(log_lines(1040, 5))
    append(rotated, written[-1])
    written.append(log_lines(1045, 10))
    log.write_text(written[-1])
    assert read(reader, 1000) == whole(written, 1000)
    assert reader.bytes_read == len(written[-2]) + len(written[-1]) and reopened == [True]

    # truncated in place (copytruncate) and shorter than where the reader was: read from the start
    written.append(log_lines(1055, 3))
    log.write_text(written[-1])
    assert read(reader, 1000) == whole(written, 1000) and reader.bytes_read == len(written[-1])

    # replaced by another file (another inode): read from the start
    written.append(log_lines(1058, 20))
    replacement = tmp_path / "new.log"
    replacement.write_text(written[-1])
    os.replace(replacement, log)
    assert read(reader, 1000) == whole(written, 1000) and reader.bytes_read == len(written[-1])

    # a reader that starts fresh reads both generations still on disk
    fresh = AccessLogReader(log, "release-2")
    assert read(fresh, 1000) == whole([rotated.read_text(), log.read_text()], 1000)
    assert fresh.bytes_read == rotated.stat().st_size + log.stat().st_size
