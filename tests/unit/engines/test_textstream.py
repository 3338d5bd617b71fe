from cloudlet.engines.textstream import StopScanner, TextAssembler


def test_assembler_never_splits_a_character() -> None:
    data = "héllo 🌍".encode()
    asm = TextAssembler()
    out = [asm.feed(data[i : i + 1]) for i in range(len(data))]
    assert "".join(out) + asm.flush() == "héllo 🌍"
    assert all(piece in ("", "h", "é", "l", "o", " ", "🌍") for piece in out)


def test_stop_string_is_cut_and_not_emitted() -> None:
    scanner = StopScanner(["END"])
    emitted = []
    for piece in ["Hello E", "N", "D and more"]:
        text, stopped = scanner.feed(piece)
        emitted.append(text)
        if stopped:
            break
    assert "".join(emitted) == "Hello "
    assert stopped
    assert scanner.hit == "END"


def test_partial_stop_prefix_is_released_when_it_does_not_match() -> None:
    scanner = StopScanner(["\n\nUser:"])
    first, stopped = scanner.feed("line\n\nUs")
    assert (first, stopped) == ("line", False)
    second, stopped = scanner.feed("ually fine")
    assert (second, stopped) == ("\n\nUsually fine", False)
    assert scanner.flush() == ""


def test_earliest_of_several_stops_wins() -> None:
    scanner = StopScanner(["b", "a"])
    assert scanner.feed("xxab") == ("xx", True)
    assert scanner.hit == "a"  # the one that ended the text, not the first listed


def test_no_stops_passes_everything() -> None:
    scanner = StopScanner([])
    assert scanner.feed("anything") == ("anything", False)
    assert scanner.hit is None
