"""D4i bridge driver against the memory-bank simulator and hand-made bank vectors."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.drivers.d4i import D4i
from edge.errors import FrameError, Implausible, NoDevice
from host_sim.devices.d4i import D4iSim, scaled, uint

# bank 202: energy 123456 Wh (scale 0), power 55.5 W (scale -1)
BANK_202 = bytes.fromhex("0f00ff010000000001e240ff0000022b")


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class Banks:
    """A bridge answering from fixed bank contents."""

    def __init__(self, banks):
        self.banks = banks

    def read_bank(self, bank):
        v = self.banks.get(bank, b"")
        if isinstance(v, Exception):
            raise v
        return v


def rig(**world):
    clock = Clock()
    state = {"power": 55.0, "supplyVoltage": 230.0, "powerFactor": 0.95, "driverTemperature": 40.0}
    state.update(world)
    sim = D4iSim(lambda: dict(state), clock=clock)
    drv = D4i(sim)
    drv.start()
    return clock, state, sim, drv


def test_vector_sim_encodes_bank_202():
    clock = Clock()
    sim = D4iSim(lambda: {"power": 55.5}, clock=clock, energy_wh=123456.7)
    assert sim.read_bank(202) == BANK_202
    assert scaled(55.5, -1, 4) == bytes.fromhex("ff0000022b")
    assert uint(2**40, 4) == bytes.fromhex("fffffffd")  # saturates below TMASK


def test_vector_driver_decodes_bank_202():
    r = D4i(Banks({202: BANK_202})).read()
    assert r == {"activeEnergy": 123456, "activePower": 55.5}


def test_vector_bank_205_206():
    b205 = bytes.fromhex("1c00ff0100000e1000000708fc325f0000000000000000010300006446")
    b206 = bytes.fromhex("2000ff010000020000090000000000002a3004b001f4010200000102000000005a")
    r = D4i(Banks({202: BANK_202, 205: b205, 206: b206})).read()
    assert r["operatingTime"] == 3600
    assert r["driverStartCounter"] == 7
    assert r["supplyVoltage"] == pytest.approx(230.0)
    assert r["powerFactor"] == pytest.approx(0.95)
    assert r["thermalDerating"] == 1
    assert r["driverTemperature"] == 40
    assert r["outputCurrentPercent"] == 70
    assert r["switchOnCounter"] == 9
    assert r["lampOnTime"] == 10800
    assert r["lampFailure"] == 1


def test_start_reads_static_info_without_serial_or_free_text():
    clock, _, sim, drv = rig()
    assert drv.info["gtin"] == 8712345678906
    assert drv.info["nominalPower"] == 60
    assert drv.info["manufactureYear"] == 2024
    assert drv.info["cct"] == 3000
    assert set(drv.info) == {
        "gtin",
        "manufactureYear",
        "manufactureWeek",
        "nominalPower",
        "minDimPower",
        "mainsVoltageMin",
        "mainsVoltageMax",
        "nominalLightOutput",
        "cri",
        "cct",
    }
    assert 1234 not in drv.info.values()  # the luminaire serial number stays in the gear
    assert "Main Street" not in repr(drv.info)


def test_sim_banks_have_their_documented_lengths():
    clock, _, sim, drv = rig()
    for bank, last in ((1, 0x77), (202, 0x0F), (205, 0x1C), (206, 0x20)):
        data = sim.read_bank(bank)
        assert data[0] == last and len(data) == last + 1
    assert sim.read_bank(203) == b""


def test_energy_integrates_power_and_never_decreases():
    clock, state, sim, drv = rig(power=60.0)
    energies = []
    for hour in range(1, 6):
        clock.t = hour * 3600.0
        state["power"] = 0.0 if hour == 3 else 60.0
        energies.append(drv.read()["activeEnergy"])
    assert energies == sorted(energies)
    assert energies[-1] == pytest.approx(4 * 60 + 0.3, abs=1)  # one hour at standby


def test_counters_and_on_time():
    clock, state, sim, drv = rig()
    clock.t = 100.0
    r = drv.read()
    assert r["switchOnCounter"] == 1 and r["lampOnTime"] == 100
    state["lampOn"] = False
    clock.t = 200.0
    drv.read()
    state["lampOn"] = True
    clock.t = 300.0
    r = drv.read()
    assert r["switchOnCounter"] == 2
    assert r["lampOnTime"] == 200
    assert r["operatingTime"] == 300
    sim.power_cycle()
    assert drv.read()["driverStartCounter"] == 2


def test_lamp_failure_fault():
    clock, state, sim, drv = rig()
    clock.t = 10.0
    assert drv.read()["lampFailure"] == 0
    sim.lamp_failure = True
    clock.t = 20.0
    r = drv.read()
    assert r["lampFailure"] == 1
    assert r["activePower"] <= 0.3
    assert r["outputCurrentPercent"] == 0


def test_thermal_derating_fault():
    clock, state, sim, drv = rig(driverTemperature=85.0)
    sim.thermal_derating = True
    clock.t = 10.0
    r = drv.read()
    assert r["thermalDerating"] == 1
    assert r["outputCurrentPercent"] == 70
    assert r["driverTemperature"] == 85
    assert r["activePower"] < 55.0 * 0.75


def test_tmask_field_is_left_out():
    clock, state, sim, drv = rig()
    sim.tmask_power = True
    r = drv.read()
    assert "activePower" not in r and "activeEnergy" in r


def test_no_reply_is_no_device():
    clock, state, sim, drv = rig()
    sim.no_reply = True
    with pytest.raises(NoDevice):
        drv.read()
    with pytest.raises(NoDevice):
        D4i(Banks({})).start()  # bank 202 missing: not a D4i gear
    with pytest.raises(NoDevice):
        D4i(Banks({202: OSError(5, "timeout")})).start()


def test_framing_truncation_and_bad_scale_are_frame_errors():
    with pytest.raises(FrameError):
        D4i(Banks({202: ValueError("collision")})).read()
    with pytest.raises(FrameError):
        D4i(Banks({202: BANK_202[:10]})).read()
    bad_scale = BANK_202[:4] + b"\x07" + BANK_202[5:]
    with pytest.raises(FrameError):
        D4i(Banks({202: bad_scale})).read()


def test_energy_going_down_is_implausible_once():
    banks = Banks({202: BANK_202})
    drv = D4i(banks)
    drv.read()
    banks.banks[202] = BANK_202[:5] + bytes(6) + BANK_202[11:]
    with pytest.raises(Implausible):
        drv.read()
    assert drv.read()["activeEnergy"] == 0  # new baseline


def test_invalid_flag_is_implausible():
    b206 = bytearray(D4iSim(lambda: {"power": 10.0}, clock=Clock()).read_bank(206))
    b206[0x16] = 5
    with pytest.raises(Implausible):
        D4i(Banks({202: BANK_202, 206: bytes(b206)})).read()


@given(
    energy=st.floats(min_value=0, max_value=1e9),
    power=st.floats(min_value=0, max_value=2000),
    escale=st.integers(min_value=-2, max_value=3),
    pscale=st.integers(min_value=-3, max_value=1),
    volts=st.floats(min_value=0, max_value=500),
    pf=st.floats(min_value=0, max_value=1),
    temp=st.integers(min_value=-60, max_value=193),
)
def test_round_trip(energy, power, escale, pscale, volts, pf, temp):
    clock = Clock()
    world = {
        "power": power,
        "supplyVoltage": volts,
        "powerFactor": pf,
        "driverTemperature": temp,
        "lampOn": True,
    }
    sim = D4iSim(
        lambda: dict(world), clock=clock, energy_wh=energy, energy_scale=escale, power_scale=pscale
    )
    r = D4i(sim).read()
    assert energy - 10.0**escale <= r["activeEnergy"] <= energy + 1e-6 * max(1.0, energy)
    assert r["activePower"] == pytest.approx(power, abs=10.0**pscale / 2 + 1e-9)
    assert r["supplyVoltage"] == pytest.approx(volts, abs=0.05 + 1e-9)
    assert r["powerFactor"] == pytest.approx(pf, abs=0.005 + 1e-9)
    assert r["driverTemperature"] == temp
