"""The Dark Machines channel processes (arXiv:2105.14027) of the catalogue: each YAML loads, real Pythia 8
accepts every line and initialises, and the SLHA spectra give the masses and decays their descriptions state."""

from __future__ import annotations

import pytest

from darkflow.generate.catalogue import load_process, process_names
from darkflow.generate.engine import make_pythia

pytestmark = pytest.mark.slow

DM_PROCESSES = [
    "glgl1400_neut1100", "glgl1600_neut800", "sqsq1800_neut800", "sqsq1400_neut800", "stop1000_neut300",
    "monojet_zp2000_dm50", "chaneut_cha250_neut150", "chacha_cha400_neut60", "chacha_cha600_neut200",
    "qcd_ht_250", "qcd_ht_350", "qcd_ht_500", "qcd_ht_800", "ttbar_ht_lo", "ttbar_ht_hi", "wjets_ht",
    "zjets_nunu_ht", "single_top_ht", "gammajets_ht",
    "ww_2l2nu", "wz_3lnu", "zz_ll", "ttbar_2l", "zjets_ll_dm",
]

# (process, PDG id, mass in GeV, {decay product PDG ids of the open channels (sets, charge-conjugates folded)})
SPECTRA = [
    ("glgl1400_neut1100", 1000021, 1400.0, {frozenset({1000022, 1}), frozenset({1000022, 2}),
                                             frozenset({1000022, 3}), frozenset({1000022, 4})}),
    ("glgl1400_neut1100", 1000022, 1100.0, None),
    ("glgl1600_neut800", 1000021, 1600.0, None),
    ("glgl1600_neut800", 1000022, 800.0, None),
    ("sqsq1800_neut800", 2000003, 1800.0, {frozenset({1000022, 3})}),
    ("sqsq1400_neut800", 1000002, 1400.0, {frozenset({1000022, 2})}),
    ("sqsq1400_neut800", 1000001, 5000.0, None),
    ("stop1000_neut300", 1000006, 1000.0, {frozenset({1000022, 6})}),
    ("stop1000_neut300", 1000022, 300.0, None),
    ("chaneut_cha250_neut150", 1000024, 250.0, {frozenset({1000022, 24})}),
    ("chaneut_cha250_neut150", 1000023, 250.0, {frozenset({1000022, 23})}),
    ("chaneut_cha250_neut150", 1000022, 150.0, None),
    ("chacha_cha400_neut60", 1000024, 400.0, {frozenset({1000022, 24})}),
    ("chacha_cha600_neut200", 1000022, 200.0, None),
    ("monojet_zp2000_dm50", 55, 2000.0, {frozenset({52})}),
    ("monojet_zp2000_dm50", 52, 50.0, None),
]


def test_every_process_is_in_the_catalogue():
    assert set(DM_PROCESSES) <= set(process_names())


@pytest.mark.parametrize("name", DM_PROCESSES)
def test_pythia_accepts_and_initialises(name):
    process = load_process(name)
    assert process.description and process.kind == ("bsm" if name[:2] in ("gl", "sq", "st", "mo", "ch") else "sm")
    pythia = make_pythia(process, seed=3)  # raises ConfigError on a rejected line or a failed init()
    assert pythia.next()
    assert pythia.infoPython().sigmaGen() > 0


@pytest.mark.parametrize(("name", "pdg", "mass", "channels"), SPECTRA)
def test_spectrum_masses_and_decays(name, pdg, mass, channels):
    pythia = make_pythia(load_process(name), seed=3)
    entry = pythia.particleData.particleDataEntryPtr(pdg)
    assert entry.m0() == pytest.approx(mass, rel=1e-6)
    if channels is not None:
        open_channels = set()
        for i in range(entry.sizeChannels()):
            ch = entry.channel(i)
            if ch.onMode() > 0 and ch.bRatio() > 0:
                open_channels.add(frozenset(abs(ch.product(k)) for k in range(ch.multiplicity())))
        assert open_channels == channels
