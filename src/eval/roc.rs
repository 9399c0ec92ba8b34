//! The receiver operating characteristic of a reader study (MAM-E §3.3: a radiologist rated
//! real and synthetic mammograms from 0, "definitely synthetic", to 4, "definitely real"): the
//! curve and its area as scikit-learn computes them (`roc_curve`, `roc_auc_score`, ties counted
//! half), and the area's 95 % confidence interval by DeLong's method.

/// One rated image: whether it is real (the positive class) and its rating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rating {
    pub real: bool,
    pub score: f64,
}

/// A ROC curve as `sklearn.metrics.roc_curve` returns it (with `drop_intermediate=True`):
/// starting at (0, 0) with an infinite threshold, one point per kept distinct score, descending.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RocCurve {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
    /// `f64::INFINITY` first (serialized as null).
    pub thresholds: Vec<f64>,
}

/// What a reader study shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RocResult {
    pub real: usize,
    pub synthetic: usize,
    pub auroc: f64,
    /// DeLong's standard error of the area.
    pub standard_error: f64,
    /// 95 % confidence interval (normal approximation with DeLong's variance), clipped to [0, 1].
    pub ci95: [f64; 2],
    pub curve: RocCurve,
    pub verdict: String,
}

/// The two-sided 97.5 % quantile of the standard normal.
const Z_975: f64 = 1.959_963_984_540_054;

/// Refuses what has no ROC curve: no ratings, or only one class.
fn check(ratings: &[Rating]) -> Result<(usize, usize), String> {
    let real = ratings.iter().filter(|r| r.real).count();
    let synthetic = ratings.len() - real;
    if ratings.is_empty() {
        return Err("no ratings".into());
    }
    if real == 0 || synthetic == 0 {
        return Err(format!(
            "only {} images were rated ({} of them): a ROC curve needs both real and synthetic ones",
            if real == 0 { "synthetic" } else { "real" },
            ratings.len()
        ));
    }
    if let Some(r) = ratings.iter().find(|r| !r.score.is_finite()) {
        return Err(format!("rating {} is not a number", r.score));
    }
    Ok((real, synthetic))
}

/// scikit-learn's `roc_curve(y_true, y_score)`.
pub fn roc_curve(ratings: &[Rating]) -> Result<RocCurve, String> {
    check(ratings)?;
    let mut sorted: Vec<Rating> = ratings.to_vec();
    // Descending by score; the order within ties does not change the counts at their ends.
    sorted.sort_by(|a, b| b.score.total_cmp(&a.score));
    // Cumulative true and false positives at the last index of each distinct score.
    let (mut fps, mut tps, mut thresholds) = (Vec::new(), Vec::new(), Vec::new());
    let mut positives = 0.0;
    for (i, r) in sorted.iter().enumerate() {
        positives += r.real as u8 as f64;
        if i + 1 == sorted.len() || sorted[i + 1].score != r.score {
            tps.push(positives);
            fps.push((i + 1) as f64 - positives);
            thresholds.push(r.score);
        }
    }
    // drop_intermediate: keep the ends and every corner (a non-zero second difference).
    if fps.len() > 2 {
        let keep: Vec<usize> = (0..fps.len())
            .filter(|&i| i == 0 || i + 1 == fps.len() || fps[i + 1] - 2.0 * fps[i] + fps[i - 1] != 0.0 || tps[i + 1] - 2.0 * tps[i] + tps[i - 1] != 0.0)
            .collect();
        (fps, tps, thresholds) =
            (keep.iter().map(|&i| fps[i]).collect(), keep.iter().map(|&i| tps[i]).collect(), keep.iter().map(|&i| thresholds[i]).collect());
    }
    let (negatives, positives) = (*fps.last().unwrap(), *tps.last().unwrap());
    Ok(RocCurve {
        fpr: std::iter::once(0.0).chain(fps.iter().map(|f| f / negatives)).collect(),
        tpr: std::iter::once(0.0).chain(tps.iter().map(|t| t / positives)).collect(),
        thresholds: std::iter::once(f64::INFINITY).chain(thresholds).collect(),
    })
}

/// The area under a curve by the trapezoidal rule (`sklearn.metrics.auc`).
pub fn auc(curve: &RocCurve) -> f64 {
    curve.fpr.windows(2).zip(curve.tpr.windows(2)).map(|(x, y)| (x[1] - x[0]) * (y[1] + y[0]) / 2.0).sum()
}

/// Midranks (1-based; tied values share the mean of their ranks).
fn midranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && values[order[end + 1]] == values[order[start]] {
            end += 1;
        }
        let rank = (start + end) as f64 / 2.0 + 1.0;
        for &i in &order[start..=end] {
            ranks[i] = rank;
        }
        start = end + 1;
    }
    ranks
}

/// DeLong's structural components (DeLong, DeLong & Clarke-Pearson 1988) by the midrank
/// computation of Sun & Xu (2014): V10, per real image the share of synthetic ones it beats
/// (ties half), and V01, per synthetic image the share of real ones that beat it. The area is
/// the mean of either.
fn components(ratings: &[Rating]) -> Result<(Vec<f64>, Vec<f64>), String> {
    let (m, n) = check(ratings)?;
    let x: Vec<f64> = ratings.iter().filter(|r| r.real).map(|r| r.score).collect();
    let y: Vec<f64> = ratings.iter().filter(|r| !r.real).map(|r| r.score).collect();
    let all: Vec<f64> = x.iter().chain(&y).copied().collect();
    let (rank_all, rank_x, rank_y) = (midranks(&all), midranks(&x), midranks(&y));
    let v10 = (0..m).map(|i| (rank_all[i] - rank_x[i]) / n as f64).collect();
    let v01 = (0..n).map(|j| 1.0 - (rank_all[m + j] - rank_y[j]) / m as f64).collect();
    Ok((v10, v01))
}

/// The sample covariance (n − 1) of two equally long series; 0 for fewer than two values.
fn covariance(a: &[f64], b: &[f64]) -> f64 {
    if a.len() < 2 {
        return 0.0;
    }
    let (mean_a, mean_b) = (a.iter().sum::<f64>() / a.len() as f64, b.iter().sum::<f64>() / b.len() as f64);
    a.iter().zip(b).map(|(x, y)| (x - mean_a) * (y - mean_b)).sum::<f64>() / (a.len() - 1) as f64
}

/// DeLong's variance of the area: Var(AUC) = S10/m + S01/n, the sample variances of the
/// structural components over the real (m) and synthetic (n) counts. Returns (area, variance).
pub fn delong(ratings: &[Rating]) -> Result<(f64, f64), String> {
    let (v10, v01) = components(ratings)?;
    let area = v10.iter().sum::<f64>() / v10.len() as f64;
    Ok((area, covariance(&v10, &v10) / v10.len() as f64 + covariance(&v01, &v01) / v01.len() as f64))
}

/// Two scorings of the same images compared (two CADs on one test set): DeLong's test for
/// correlated ROC curves.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PairedComparison {
    /// AUROC of the first scoring minus the second's.
    pub difference: f64,
    /// Var(A₁ − A₂) = Var(A₁) + Var(A₂) − 2 Cov(A₁, A₂), each from the structural components.
    pub variance: f64,
    pub ci95: [f64; 2],
    /// Two-sided p-value of "the areas are equal" (normal approximation).
    pub p_value: f64,
}

/// DeLong's paired comparison of `first` and `second`: the same images, in the same order, with
/// the same classes.
pub fn delong_paired(first: &[Rating], second: &[Rating]) -> Result<PairedComparison, String> {
    if first.len() != second.len() || first.iter().zip(second).any(|(a, b)| a.real != b.real) {
        return Err("a paired comparison needs the same images, in the same order, scored twice".into());
    }
    let ((a10, a01), (b10, b01)) = (components(first)?, components(second)?);
    let (m, n) = (a10.len() as f64, a01.len() as f64);
    let difference = a10.iter().sum::<f64>() / m - b10.iter().sum::<f64>() / m;
    let part = |a: &[f64], b: &[f64], count: f64| (covariance(a, a) + covariance(b, b) - 2.0 * covariance(a, b)) / count;
    let variance = (part(&a10, &b10, m) + part(&a01, &b01, n)).max(0.0);
    let half_width = Z_975 * variance.sqrt();
    let p_value = if variance > 0.0 {
        libm::erfc(difference.abs() / (2.0 * variance).sqrt())
    } else if difference == 0.0 {
        1.0
    } else {
        0.0
    };
    Ok(PairedComparison { difference, variance, ci95: [difference - half_width, difference + half_width], p_value })
}

/// The whole analysis of a reader study.
pub fn analyse(ratings: &[Rating]) -> Result<RocResult, String> {
    let (real, synthetic) = check(ratings)?;
    let curve = roc_curve(ratings)?;
    let auroc = auc(&curve);
    let (_, variance) = delong(ratings)?;
    let standard_error = variance.sqrt();
    let ci95 = [(auroc - Z_975 * standard_error).max(0.0), (auroc + Z_975 * standard_error).min(1.0)];
    let verdict = if ci95[0] <= 0.5 && 0.5 <= ci95[1] {
        "readers could not tell synthetic from real: the 95 % interval of the AUROC contains 0.5 (chance)"
    } else if ci95[0] > 0.5 {
        "readers told real from synthetic better than chance: the 95 % interval of the AUROC lies above 0.5"
    } else {
        "readers rated synthetic images as more real than the real ones: the 95 % interval of the AUROC lies below 0.5"
    };
    Ok(RocResult { real, synthetic, auroc, standard_error, ci95, curve, verdict: verdict.into() })
}

/// The number of ratings per class on the paper's 0–4 scale (a non-integer rating at its floor):
/// `[synthetic, real]`.
pub fn histogram(ratings: &[Rating]) -> [[usize; 5]; 2] {
    let mut counts = [[0usize; 5]; 2];
    for r in ratings {
        counts[usize::from(r.real)][(r.score.floor().max(0.0) as usize).min(4)] += 1;
    }
    counts
}

/// Reads a ratings CSV: a header with the columns `class` (`real` or `synthetic`) and `rating`
/// (0–4, the paper's scale), others (e.g. `image`) ignored. Errors name the line.
pub fn read_ratings_csv(text: &str) -> Result<Vec<Rating>, String> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or("the ratings file is empty")?;
    let columns: Vec<String> = header.split(',').map(|c| c.trim().trim_matches('"').to_ascii_lowercase()).collect();
    let at = |name: &str| columns.iter().position(|c| c == name).ok_or_else(|| format!("the header {header:?} has no column {name:?} (expected class,rating)"));
    let (class_at, rating_at) = (at("class")?, at("rating")?);
    let mut ratings = Vec::new();
    for (i, line) in lines {
        let fields: Vec<&str> = line.split(',').map(|f| f.trim().trim_matches('"')).collect();
        let field = |k: usize| fields.get(k).copied().ok_or_else(|| format!("line {}: only {} fields", i + 1, fields.len()));
        let real = match field(class_at)?.to_ascii_lowercase().as_str() {
            "real" => true,
            "synthetic" => false,
            other => return Err(format!("line {}: class {other:?} is neither real nor synthetic", i + 1)),
        };
        let text = field(rating_at)?;
        let score: f64 = text.parse().map_err(|_| format!("line {}: rating {text:?} is not a number", i + 1))?;
        if !(0.0..=4.0).contains(&score) {
            return Err(format!("line {}: rating {score} is outside 0–4 (0 definitely synthetic … 4 definitely real)", i + 1));
        }
        ratings.push(Rating { real, score });
    }
    check(&ratings)?;
    Ok(ratings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ratings(real: &[f64], synthetic: &[f64]) -> Vec<Rating> {
        real.iter().map(|&score| Rating { real: true, score }).chain(synthetic.iter().map(|&score| Rating { real: false, score })).collect()
    }

    #[test]
    fn perfect_chance_and_inverted_readers() {
        assert_eq!(analyse(&ratings(&[3.0, 4.0], &[0.0, 1.0])).unwrap().auroc, 1.0);
        assert_eq!(analyse(&ratings(&[0.0, 1.0], &[3.0, 4.0])).unwrap().auroc, 0.0);
        // All ties: every pair counts half.
        let tied = analyse(&ratings(&[2.0; 5], &[2.0; 7])).unwrap();
        assert_eq!((tied.auroc, tied.curve.fpr.clone(), tied.curve.tpr.clone()), (0.5, vec![0.0, 1.0], vec![0.0, 1.0]));
        assert!(tied.verdict.starts_with("readers could not tell"));
    }

    #[test]
    fn midranks_share_ties() {
        assert_eq!(midranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn ratings_files_are_checked_by_line() {
        let ok = read_ratings_csv("image,class,rating\na.png,real,4\nb.png,synthetic,0\n").unwrap();
        assert_eq!(ok, ratings(&[4.0], &[0.0]));
        assert!(read_ratings_csv("").unwrap_err().contains("empty"));
        assert!(read_ratings_csv("image,rating\na,1\n").unwrap_err().contains("no column \"class\""));
        assert!(read_ratings_csv("class,rating\nreal,5\nsynthetic,1\n").unwrap_err().contains("line 2: rating 5 is outside 0–4"));
        assert!(read_ratings_csv("class,rating\nreal,x\n").unwrap_err().contains("line 2: rating \"x\""));
        assert!(read_ratings_csv("class,rating\nfake,1\n").unwrap_err().contains("neither real nor synthetic"));
        assert!(read_ratings_csv("class,rating\nreal,1\nreal,2\n").unwrap_err().contains("only real images were rated"));
        assert!(read_ratings_csv("class,rating\n").unwrap_err().contains("no ratings"));
    }
}
