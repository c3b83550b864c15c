"""The outbox of a client connection in memory: flights, acknowledgements, what is given back."""

from __future__ import annotations

from zerolink.net.outbox import Outbox


def test_stanzas_wait_then_fly_in_chunks_and_are_forgotten_once_acknowledged() -> None:
    box = Outbox()
    for i in range(5):
        box.put(b"m%d" % i + b"." * 98, keep=True)  # 100 bytes each
    box.put(b"<presence/>", keep=False)
    assert box.size == 511 and box.waiting and not box.in_flight
    assert box.take(250) == [b"m0" + b"." * 98, b"m1" + b"." * 98, b"m2" + b"." * 98]
    box.launched(1000)  # raw offset after the write (TLS adds bytes)
    assert box.queued_bytes == 211 and box.kept_bytes == 300 and box.size == 511
    assert len(box.take(1000)) == 3
    box.launched(1400)
    assert box.kept_bytes == 500 and not box.waiting
    assert box.acked(999) == [] and box.kept_bytes == 500  # the first flight is not all there
    assert box.acked(1000) == [] and box.kept_bytes == 200
    assert box.acked(1400) == [] and box.size == 0 and not box.in_flight


def test_undelivered_gives_back_kept_stanzas_in_order_and_empties() -> None:
    box = Outbox()
    box.put(b"<message id='a'/>", keep=True)
    box.put(b"<presence/>", keep=False)
    box.take()
    box.launched(100)
    box.put(b"<message id='b'/>", keep=True)
    box.take()
    box.launched(200)
    box.acked(100)  # 'a' reached the client
    box.put(b"<message id='c'/>", keep=True)  # never written
    box.put(b"<message id='stored'/>", keep=False)  # still in the offline store
    assert box.undelivered() == [b"<message id='b'/>", b"<message id='c'/>"]
    assert box.size == 0 and not box.waiting and not box.in_flight
    assert box.undelivered() == []


def test_a_chunk_taken_and_never_launched_is_given_back() -> None:
    box = Outbox()
    box.put(b"<message id='a'/>", keep=True)
    box.take()  # the write raised, say
    assert box.undelivered() == [b"<message id='a'/>"]


def test_take_gives_at_least_one_stanza_however_large() -> None:
    box = Outbox()
    box.put(b"x" * 5000, keep=True)
    box.put(b"y", keep=True)
    assert box.take(10) == [b"x" * 5000]


def test_a_mark_fires_once_everything_before_it_is_acknowledged() -> None:
    box = Outbox()
    fired: list[str] = []
    box.put(b"one", keep=False)
    box.put(b"two", keep=False)
    box.mark(lambda: fired.append("batch"))
    box.put(b"live", keep=True)
    assert box.take(3) == [b"one"]
    box.launched(10)
    assert box.take(100) == [b"two", b"live"]
    box.launched(20)
    assert [m() for m in box.acked(10)] == [] and fired == []
    assert [m() for m in box.acked(20)] == [None] and fired == ["batch"]


def test_a_mark_right_behind_a_chunk_goes_with_it() -> None:
    box = Outbox()
    box.put(b"one", keep=False)
    box.mark(lambda: None)
    box.put(b"two", keep=False)
    assert box.take(1) == [b"one"]
    box.launched(5)
    assert len(box.acked(5)) == 1


def test_marks_are_dropped_when_the_connection_ends() -> None:
    box = Outbox()
    box.put(b"one", keep=False)
    box.mark(lambda: None)
    box.take()
    box.launched(5)
    assert box.undelivered() == []
    assert box.acked(10**9) == []
