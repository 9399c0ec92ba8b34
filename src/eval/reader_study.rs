//! A blinded reader study as MAM-E ran it (§3.3): real and synthetic images in equal numbers, in
//! a seeded random order, each rated once on the paper's scale from 0 ("definitely synthetic")
//! to 4 ("definitely real"). Going back to change a rating is allowed and counted. The state is
//! plain data (serde), so the page keeps it across a reload; the ratings export as the CSV that
//! `mam-e eval roc` reads.

use serde::{Deserialize, Serialize};

use super::roc::Rating;
use crate::rng::NoiseRng;

/// The paper's scale, lowest first.
pub const SCALE: [&str; 5] = ["definitely synthetic", "probably synthetic", "unsure", "probably real", "definitely real"];

/// One image of the study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// The file it came from (or "gallery seed N"): shown only in the export, never while rating.
    pub name: String,
    pub real: bool,
    pub rating: Option<u8>,
    /// How many times the rating was changed after going back.
    pub changes: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Study {
    pub seed: u64,
    pub trials: Vec<Trial>,
    /// The trial shown now (`trials.len()` when all are rated).
    pub position: usize,
}

/// `items` in a random order drawn from `rng` (Fisher–Yates).
fn shuffle<T>(items: &mut [T], rng: &mut NoiseRng) {
    for i in (1..items.len()).rev() {
        let j = ((rng.uniform() * (i + 1) as f64) as usize).min(i);
        items.swap(i, j);
    }
}

impl Study {
    /// `size / 2` real and as many synthetic images (fewer when a side has fewer), drawn and
    /// ordered by `seed`. `real` and `synthetic` are the images' names, in the order of the
    /// caller's image lists: a trial's index into them is its position in its own list.
    pub fn new(real: &[String], synthetic: &[String], size: usize, seed: u64) -> Result<(Study, Vec<(bool, usize)>), String> {
        let per_class = (size / 2).min(real.len()).min(synthetic.len());
        if per_class == 0 {
            return Err(format!("a study needs real and synthetic images: {} real, {} synthetic, size {size} (at least 2)", real.len(), synthetic.len()));
        }
        let mut rng = NoiseRng::new(seed);
        let mut pick = |count: usize, is_real: bool| {
            let mut indices: Vec<usize> = (0..count).collect();
            shuffle(&mut indices, &mut rng);
            indices.truncate(per_class);
            indices.into_iter().map(move |i| (is_real, i)).collect::<Vec<_>>()
        };
        let mut order = pick(real.len(), true);
        order.extend(pick(synthetic.len(), false));
        shuffle(&mut order, &mut rng);
        let trials = order
            .iter()
            .map(|&(is_real, i)| Trial { name: if is_real { real[i].clone() } else { synthetic[i].clone() }, real: is_real, rating: None, changes: 0 })
            .collect();
        Ok((Study { seed, trials, position: 0 }, order))
    }

    pub fn finished(&self) -> bool {
        self.position >= self.trials.len()
    }

    pub fn rated(&self) -> usize {
        self.trials.iter().filter(|t| t.rating.is_some()).count()
    }

    /// Rates the current image and moves to the next unrated one (or the end).
    pub fn rate(&mut self, rating: u8) -> Result<(), String> {
        if rating > 4 {
            return Err(format!("rating {rating} is outside 0–4"));
        }
        let Some(trial) = self.trials.get_mut(self.position) else { return Err("every image is rated".into()) };
        if trial.rating.is_some_and(|r| r != rating) {
            trial.changes += 1;
        }
        trial.rating = Some(rating);
        self.position = (self.position + 1..self.trials.len()).find(|&i| self.trials[i].rating.is_none()).unwrap_or(self.trials.len());
        Ok(())
    }

    /// Goes back one image (to change its rating).
    pub fn back(&mut self) {
        self.position = self.position.saturating_sub(1);
    }

    pub fn ratings(&self) -> Vec<Rating> {
        self.trials.iter().filter_map(|t| t.rating.map(|r| Rating { real: t.real, score: f64::from(r) })).collect()
    }

    /// The ratings as `mam-e eval roc` reads them: `image,class,rating,changes`, in the order shown.
    pub fn to_csv(&self) -> String {
        let mut csv = String::from("image,class,rating,changes\n");
        for t in self.trials.iter().filter(|t| t.rating.is_some()) {
            let name: String = t.name.chars().map(|c| if c == ',' || c == '"' || c.is_control() { '_' } else { c }).collect();
            csv += &format!("{name},{},{},{}\n", if t.real { "real" } else { "synthetic" }, t.rating.unwrap_or_default(), t.changes);
        }
        csv
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::roc::read_ratings_csv;

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}.png")).collect()
    }

    #[test]
    fn half_real_half_synthetic_in_a_seeded_order() {
        let (study, order) = Study::new(&names("r", 30), &names("s", 12), 50, 7).unwrap();
        assert_eq!(study.trials.len(), 24, "12 of each: the synthetic side has 12");
        assert_eq!(study.trials.iter().filter(|t| t.real).count(), 12);
        for (trial, (real, i)) in study.trials.iter().zip(&order) {
            assert_eq!(trial.name, format!("{}{i}.png", if *real { "r" } else { "s" }));
        }
        let mut distinct: Vec<_> = order.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 24, "no image twice");
        assert_eq!(Study::new(&names("r", 30), &names("s", 12), 50, 7).unwrap().1, order);
        assert_ne!(Study::new(&names("r", 30), &names("s", 12), 50, 8).unwrap().1, order);
        let classes: Vec<bool> = study.trials.iter().map(|t| t.real).collect();
        assert!(classes.windows(2).any(|w| w[0] != w[1]) && classes[..12].iter().any(|&r| !r), "shuffled: {classes:?}");
        assert!(Study::new(&names("r", 3), &[], 50, 0).unwrap_err().contains("0 synthetic"));
        assert!(Study::new(&names("r", 3), &names("s", 3), 1, 0).is_err());
    }

    #[test]
    fn rating_going_back_and_export() {
        let (mut study, _) = Study::new(&names("r", 2), &names("s", 2), 4, 1).unwrap();
        study.rate(4).unwrap();
        study.rate(1).unwrap();
        study.back();
        assert_eq!(study.position, 1);
        study.rate(2).unwrap();
        assert_eq!((study.position, study.trials[1].changes, study.trials[1].rating), (2, 1, Some(2)));
        assert!(study.rate(5).unwrap_err().contains("outside 0–4"));
        study.rate(0).unwrap();
        study.rate(3).unwrap();
        assert!(study.finished() && study.rate(3).is_err());
        let csv = study.to_csv();
        assert_eq!(csv.lines().count(), 5);
        assert!(csv.lines().nth(2).unwrap().ends_with(",2,1"), "{csv}");
        assert_eq!(read_ratings_csv(&csv).unwrap(), study.ratings());
        let restored: Study = serde_json::from_str(&serde_json::to_string(&study).unwrap()).unwrap();
        assert_eq!(restored, study);
    }
}
