"""The pysunspec2-built register image: layout, scaling, clamping and decoding of writes."""

from __future__ import annotations

import pytest
import sunspec2.device as ss_device

from hil.sunspec_image import END_MODEL_ID, SUNS_MARKER, ImageError, SunSpecImage, fit_scale_factor


def test_layout_is_suns_then_the_model_chain_then_the_end_model() -> None:
    image = SunSpecImage([1, 203, 123])
    regs = image.render()
    assert regs[:2] == list(SUNS_MARKER) == [0x5375, 0x6E53]
    offset = 2
    for mid in (1, 203, 123):
        assert regs[offset] == mid
        length = regs[offset + 1]
        assert length == ss_device.Model(model_id=mid).len - 2
        assert image.model_address(mid) == image.base + offset
        offset += 2 + length
    assert regs[offset:] == [END_MODEL_ID, 0]
    assert len(regs) == image.size
    assert image.header_offsets() == frozenset({0, 1, 2, 3, 70, 71, 70 + 107, 71 + 107, offset, offset + 1})


def test_values_are_scaled_rounded_and_read_back() -> None:
    image = SunSpecImage([203])
    image.set_raw(203, "W_SF", 1)
    image.set(203, "W", -12_344.0)
    assert image.raw(203, "W") == -1234
    assert image.value(203, "W") == pytest.approx(-12_340.0)
    image.set_raw(203, "Hz_SF", -2)
    image.set(203, "Hz", 50.014)
    assert image.raw(203, "Hz") == 5001
    regs = image.render()
    assert regs[image.point(203, "Hz").address - image.base] == 5001


def test_out_of_range_values_saturate_instead_of_reading_as_not_implemented() -> None:
    image = SunSpecImage([203])
    image.set_raw(203, "W_SF", 0)
    image.set(203, "W", -1e9)
    assert image.raw(203, "W") == -32767  # not -32768, the int16 "not implemented" sentinel
    image.set(203, "W", float("nan"))
    assert image.raw(203, "W") is None
    assert image.render()[image.point(203, "W").address - image.base] == 0x8000


def test_accumulators_roll_over_like_a_meter() -> None:
    image = SunSpecImage([203])
    image.set_raw(203, "TotWh_SF", 0)
    image.set(203, "TotWhImp", 2**32 + 5)
    assert image.raw(203, "TotWhImp") == 5


def test_scale_factor_fits_the_plant_size() -> None:
    assert fit_scale_factor(30_000.0, 0) == 0
    assert fit_scale_factor(260_000.0, 0) == 1
    assert fit_scale_factor(435.0, -2) == -1
    assert fit_scale_factor(50.0, -2) == -2
    assert fit_scale_factor(70_000.0, 0, "uint16") == 1


def test_writes_are_decoded_with_partial_multi_register_points_merged() -> None:
    image = SunSpecImage([704], writable=[(704, "WSet"), (704, "WSetEna")])
    image.set_raw(704, "WSet", -5)
    regs = image.render()
    wset = image.point(704, "WSet")
    assert wset.size == 2
    # Whole int32 point.
    assert image.decode_write(wset.address, [0xFFFF, 0xFC18], regs) == {(704, "WSet"): -1000}
    # Low word only: merged with the current high word (0xFFFF for -5).
    assert image.decode_write(wset.address + 1, [0xFFF0], regs) == {(704, "WSet"): -16}
    # The int32 "not implemented" pattern decodes to None.
    assert image.decode_write(wset.address, [0x8000, 0x0000], regs) == {(704, "WSet"): None}


def test_writes_to_read_only_or_unmapped_registers_are_refused() -> None:
    image = SunSpecImage([704], writable=[(704, "WSetEna")])
    regs = image.render()
    with pytest.raises(ImageError, match="not writable"):
        image.decode_write(image.point(704, "WSet").address, [0, 1], regs)
    with pytest.raises(ImageError, match="outside"):
        image.decode_write(image.base + image.size, [1], regs)


def test_image_construction_errors_are_specific() -> None:
    with pytest.raises(ImageError, match="read-only"):
        SunSpecImage([203], writable=[(203, "W")])
    with pytest.raises(ImageError, match="unknown writable"):
        SunSpecImage([203], writable=[(203, "Nope")])
    with pytest.raises(ImageError, match="duplicate"):
        SunSpecImage([1, 1])
    with pytest.raises(ImageError, match="no point"):
        SunSpecImage([1]).point(1, "W")
