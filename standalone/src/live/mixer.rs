//! The live mix the user controls: per-stem gain in dB, mute and solo, and the presets
//! (isolate one stem, remove one stem, everything). Lives on the control thread; the effective
//! linear gains are published to the audio thread through [`super::shared::Shared`].

use anyhow::{bail, Result};

use super::shared::Shared;

/// Highest gain a stem may get, in dB.
pub const MAX_GAIN_DB: f32 = 12.0;
/// Gains at or below this many dB are treated as silence (−inf).
pub const MIN_GAIN_DB: f32 = -60.0;

/// A preset chosen on the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Preset {
    /// Every stem at unity.
    All,
    /// Only the named stem.
    Isolate(String),
    /// Every stem but the named one.
    Remove(String),
}

/// Gains, mutes and solos of every stem. Not used on the audio thread.
#[derive(Debug, Clone)]
pub struct Mixer {
    names: Vec<String>,
    gain_db: Vec<f32>,
    muted: Vec<bool>,
    soloed: Vec<bool>,
}

impl Mixer {
    /// Every stem of `names` at 0 dB, none muted or soloed.
    pub fn new(names: &[String]) -> Self {
        Self {
            names: names.to_vec(),
            gain_db: vec![0.0; names.len()],
            muted: vec![false; names.len()],
            soloed: vec![false; names.len()],
        }
    }

    /// Stem names, in engine order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Index of the stem called `name`, or an error listing the model's stems.
    pub fn index_of(&self, name: &str) -> Result<usize> {
        match self.names.iter().position(|n| n == name) {
            Some(i) => Ok(i),
            None => bail!(
                "the model has no stem `{name}`; its stems are: {}",
                self.names.join(", ")
            ),
        }
    }

    /// Applies a preset: unmutes and unsolos everything and sets the gains it implies.
    pub fn apply_preset(&mut self, preset: &Preset) -> Result<()> {
        let (keep, level) = match preset {
            Preset::All => (None, 0.0),
            Preset::Isolate(name) => (Some(self.index_of(name)?), f32::NEG_INFINITY),
            Preset::Remove(name) => (Some(self.index_of(name)?), 0.0),
        };
        self.muted.fill(false);
        self.soloed.fill(false);
        self.gain_db.fill(level);
        if let Some(index) = keep {
            self.gain_db[index] = if level == 0.0 { f32::NEG_INFINITY } else { 0.0 };
        }
        Ok(())
    }

    /// Sets stem `name`'s gain in dB (clamped to −inf..+12 dB).
    pub fn set_gain_db(&mut self, name: &str, db: f32) -> Result<()> {
        let index = self.index_of(name)?;
        self.gain_db[index] = clamp_db(db);
        Ok(())
    }

    /// Moves stem `index`'s gain by `step` dB; from −inf, a positive step starts at −60 dB.
    pub fn nudge(&mut self, index: usize, step: f32) {
        if let Some(db) = self.gain_db.get_mut(index) {
            let from = if db.is_finite() { *db } else { MIN_GAIN_DB };
            *db = clamp_db(from + step);
        }
    }

    /// Sets stem `index` back to 0 dB.
    pub fn reset_gain(&mut self, index: usize) {
        if let Some(db) = self.gain_db.get_mut(index) {
            *db = 0.0;
        }
    }

    /// Toggles stem `index`'s mute.
    pub fn toggle_mute(&mut self, index: usize) {
        if let Some(m) = self.muted.get_mut(index) {
            *m = !*m;
        }
    }

    /// Toggles stem `index`'s solo.
    pub fn toggle_solo(&mut self, index: usize) {
        if let Some(s) = self.soloed.get_mut(index) {
            *s = !*s;
        }
    }

    /// Stem `index`'s gain in dB (−inf for silence).
    pub fn gain_db(&self, index: usize) -> f32 {
        self.gain_db
            .get(index)
            .copied()
            .unwrap_or(f32::NEG_INFINITY)
    }

    /// Whether stem `index` is muted.
    pub fn is_muted(&self, index: usize) -> bool {
        self.muted.get(index).copied().unwrap_or(false)
    }

    /// Whether stem `index` is soloed.
    pub fn is_soloed(&self, index: usize) -> bool {
        self.soloed.get(index).copied().unwrap_or(false)
    }

    /// The linear gain stem `index` really gets: 0 when muted or when other stems are soloed.
    pub fn effective_gain(&self, index: usize) -> f32 {
        let any_solo = self.soloed.iter().any(|&s| s);
        if self.is_muted(index) || (any_solo && !self.is_soloed(index)) {
            return 0.0;
        }
        db_to_gain(self.gain_db(index))
    }

    /// Publishes every stem's effective gain to the audio thread.
    pub fn publish(&self, shared: &Shared) {
        for index in 0..self.names.len() {
            shared.set_gain(index, self.effective_gain(index));
        }
    }
}

/// Parses `--gain` entries such as `vocals=-inf`, `drums=+3`, `bass=-6.5dB`.
pub fn parse_gain(entry: &str) -> Result<(String, f32)> {
    let Some((name, value)) = entry.split_once('=') else {
        bail!("--gain expects NAME=DB (e.g. vocals=-inf or drums=+3), not `{entry}`");
    };
    let name = name.trim();
    let value = value.trim();
    let number = value
        .strip_suffix("dB")
        .or_else(|| value.strip_suffix("db"))
        .unwrap_or(value)
        .trim();
    let db = match number.to_ascii_lowercase().as_str() {
        "-inf" | "-infinity" | "off" | "mute" => f32::NEG_INFINITY,
        other => match other.parse::<f32>() {
            Ok(v) if v.is_finite() => v,
            _ => bail!("--gain {name}: `{value}` is not a gain in dB (e.g. -inf, -6, +3)"),
        },
    };
    if name.is_empty() {
        bail!("--gain `{entry}`: the stem name is missing");
    }
    if db > MAX_GAIN_DB {
        bail!("--gain {name}: {db} dB is above the +{MAX_GAIN_DB} dB maximum");
    }
    Ok((name.to_string(), db))
}

/// Linear gain of `db` decibels; −inf and anything at or below −60 dB is silence.
pub fn db_to_gain(db: f32) -> f32 {
    if db <= MIN_GAIN_DB {
        0.0
    } else {
        10f32.powf(db / 20.0)
    }
}

fn clamp_db(db: f32) -> f32 {
    if db <= MIN_GAIN_DB {
        f32::NEG_INFINITY
    } else {
        db.min(MAX_GAIN_DB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mixer() -> Mixer {
        let names: Vec<String> = ["vocals", "drums", "bass", "other"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        Mixer::new(&names)
    }

    #[test]
    fn gain_entries_parse_with_and_without_units_and_reject_nonsense() {
        assert_eq!(
            parse_gain("vocals=-inf").unwrap(),
            ("vocals".into(), f32::NEG_INFINITY)
        );
        assert_eq!(parse_gain("drums=+3").unwrap(), ("drums".into(), 3.0));
        assert_eq!(parse_gain(" bass = -6.5dB").unwrap(), ("bass".into(), -6.5));
        for bad in ["vocals", "vocals=loud", "=3", "drums=+20", "drums=nan"] {
            assert!(parse_gain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn presets_isolate_and_remove_one_stem() {
        let mut m = mixer();
        m.apply_preset(&Preset::Isolate("drums".into())).unwrap();
        let gains: Vec<f32> = (0..4).map(|i| m.effective_gain(i)).collect();
        assert_eq!(gains, [0.0, 1.0, 0.0, 0.0]);
        m.apply_preset(&Preset::Remove("vocals".into())).unwrap();
        let gains: Vec<f32> = (0..4).map(|i| m.effective_gain(i)).collect();
        assert_eq!(gains, [0.0, 1.0, 1.0, 1.0]);
        let err = m
            .apply_preset(&Preset::Isolate("piano".into()))
            .unwrap_err();
        assert!(
            err.to_string().contains("vocals, drums, bass, other"),
            "{err}"
        );
    }

    #[test]
    fn solo_and_mute_override_gains_and_nudges_clamp() {
        let mut m = mixer();
        m.set_gain_db("bass", 6.0).unwrap();
        m.toggle_solo(2);
        m.toggle_solo(0);
        m.toggle_mute(0);
        let gains: Vec<f32> = (0..4).map(|i| m.effective_gain(i)).collect();
        assert_eq!(gains[0], 0.0);
        assert!((gains[2] - 1.995).abs() < 1e-3);
        assert_eq!((gains[1], gains[3]), (0.0, 0.0));
        for _ in 0..10 {
            m.nudge(2, 3.0);
        }
        assert_eq!(m.gain_db(2), MAX_GAIN_DB);
        m.set_gain_db("other", f32::NEG_INFINITY).unwrap();
        m.nudge(3, 1.0);
        assert_eq!(m.gain_db(3), -59.0);
        m.nudge(3, -5.0);
        assert_eq!(m.gain_db(3), f32::NEG_INFINITY);
    }
}
