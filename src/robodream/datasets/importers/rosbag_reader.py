"""Opening bags and reading their messages for `import-bag`: one error line for damaged files, legacy ROS 1
definitions, and the clock.

Times stay integer nanoseconds until they are made relative to the bag's first message (`BagClock`): float
seconds since the epoch (~1.7e9 s) keep only ~0.2 us, enough to move a message that lies exactly on the frame
grid off it (and so lose the episode's last frame).
"""

from __future__ import annotations

from pathlib import Path

from robodream.errors import RobodreamError


class BagClock:
    """Message times in seconds since the first message read (integer-nanosecond arithmetic until then)."""

    def __init__(self, use_header: bool):
        self.use_header = use_header  # clock=header: header.stamp where a topic's messages carry one
        self.origin_ns: int | None = None
        self._header_topics: dict[str, bool] = {}  # decided by each topic's first message

    def seconds(self, topic: str, message: object, receive_ns: int) -> float:
        if topic not in self._header_topics:
            self._header_topics[topic] = self.use_header and _has_header_clock(message)
        ns = int(receive_ns)
        if self._header_topics[topic]:
            stamp = message.header.stamp
            ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
        if self.origin_ns is None:
            self.origin_ns = ns
        return (ns - self.origin_ns) * 1e-9

    def uses_header(self, topic: str) -> bool:
        return self._header_topics.get(topic, False)


def _has_header_clock(message: object) -> bool:
    stamp = getattr(getattr(message, "header", None), "stamp", None)
    return stamp is not None and (stamp.sec != 0 or stamp.nanosec != 0)  # all-zero stamps: driver never set them


class _Ros1Reader:
    """A ROS 1 bag decoded with rosbags' bundled ROS 1 (Noetic) type store, for bags whose own definitions rosbags
    cannot register (legacy `roslib/Header`). Types the bundled store lacks (custom messages) are registered from
    the bag with the legacy header renamed. Offers the part of AnyReader that `import-bag` uses."""

    def __init__(self, path: Path):
        from rosbags.rosbag1 import Reader
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore

        self.typestore = get_typestore(Stores.ROS1_NOETIC)
        self._reader = Reader(path)
        self._reader.open()
        for connection in self._reader.connections:
            if connection.msgtype in self.typestore.types or not connection.msgdef.data:
                continue
            text = connection.msgdef.data.replace("roslib/Header", "std_msgs/Header")
            try:
                types = get_types_from_msg(text, connection.msgtype)
                self.typestore.register({k: v for k, v in types.items() if k not in self.typestore.types})
            except Exception:  # noqa: BLE001  - left unregistered: decoding that topic names it, if it is mapped
                pass

    @property
    def topics(self):
        return self._reader.topics

    @property
    def connections(self):
        return self._reader.connections

    def messages(self, connections):
        return self._reader.messages(connections=connections)

    def deserialize(self, raw: bytes, msgtype: str) -> object:
        return self.typestore.deserialize_ros1(raw, msgtype)

    def close(self) -> None:
        self._reader.close()


def open_bag(path: Path) -> tuple[object, str]:
    """An open reader of one bag (AnyReader, or the bundled-type-store fallback for legacy ROS 1 definitions), and
    a note saying which fallback was used ("" for none)."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    try:
        reader = AnyReader([path], default_typestore=get_typestore(Stores.LATEST))
        reader.open()
        return reader, ""
    except Exception as exc:  # rosbags raises many types for damaged files; name the file, not a traceback
        error = exc
    if path.is_file() and path.suffix == ".bag":
        try:
            return _Ros1Reader(path), (f"{path.name}: its message definitions could not be registered ({error}); "
                                       "decoded with the bundled ROS 1 (Noetic) types")
        except Exception:  # noqa: BLE001  - not a definitions problem: report the first error
            pass
    raise RobodreamError(f"cannot open {path}: {error} (is it a complete ROS bag?)") from None


def messages(reader, connections, path: Path):
    """reader.messages + deserialize, with errors from damaged data turned into one line naming the file."""
    iterator = reader.messages(connections=connections)
    while True:
        try:
            connection, timestamp, raw = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            raise RobodreamError(f"cannot read {path}: {exc} (the bag is truncated or corrupt)") from None
        try:
            message = reader.deserialize(raw, connection.msgtype)
        except Exception as exc:
            raise RobodreamError(f"cannot decode a {connection.msgtype} message on {connection.topic} in {path}: "
                                 f"{exc}") from None
        yield connection, timestamp, message
