//! Eigenvalues (and eigenvectors) of a real symmetric matrix, in f64: Householder reduction to
//! tridiagonal form, then the implicit QL algorithm with Wilkinson-like shifts (the EISPACK
//! routines `tred2` and `tql2`; Wilkinson & Reinsch, *Handbook for Automatic Computation* II,
//! 1971). FID's matrix square root needs them: the trace of √(Σ₁Σ₂) is the sum of the square
//! roots of a symmetric matrix's eigenvalues (see `fid`).
//!
//! Matrices are stored column by column (`a[j * n + i]` is row i, column j): the algorithm's inner
//! loops walk down columns, which is then contiguous memory. For a symmetric input the layout
//! does not matter; the eigenvectors come out as contiguous columns.

/// The eigen decomposition `A = V diag(values) Vᵀ`, eigenvalues ascending.
#[derive(Debug, Clone)]
pub struct SymmetricEigen {
    pub values: Vec<f64>,
    /// The eigenvectors, one contiguous column of `n` values per eigenvalue (empty when only the
    /// values were asked for).
    pub vectors: Vec<f64>,
}

impl SymmetricEigen {
    /// Decomposes the symmetric `n × n` matrix `a` (only its lower triangle is read).
    pub fn new(a: &[f64], n: usize, with_vectors: bool) -> Self {
        assert_eq!(a.len(), n * n, "SymmetricEigen: {} values for a {n}×{n} matrix", a.len());
        if n == 0 {
            return Self { values: Vec::new(), vectors: Vec::new() };
        }
        if a.iter().any(|x| !x.is_finite()) {
            return Self { values: vec![f64::NAN; n], vectors: if with_vectors { vec![f64::NAN; n * n] } else { Vec::new() } };
        }
        let mut v = a.to_vec();
        let (mut d, mut e) = (vec![0.0; n], vec![0.0; n]);
        tridiagonalize(&mut v, n, &mut d, &mut e, with_vectors);
        ql_implicit(&mut v, n, &mut d, &mut e, with_vectors);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&i, &j| d[i].total_cmp(&d[j]));
        let values = order.iter().map(|&i| d[i]).collect();
        let vectors = if with_vectors { order.iter().flat_map(|&i| v[i * n..(i + 1) * n].iter().copied()).collect() } else { Vec::new() };
        Self { values, vectors }
    }
}

/// Householder reduction of the symmetric matrix in `v` to tridiagonal form: diagonal in `d`,
/// sub-diagonal in `e[1..]`. With `accumulate`, `v` ends as the orthogonal transformation.
/// Kept as one function, in the order of the textbook algorithm (EISPACK's `tred2`): its
/// reflection and accumulation loops share their indices and scratch rows.
fn tridiagonalize(v: &mut [f64], n: usize, d: &mut [f64], e: &mut [f64], accumulate: bool) {
    let at = |i: usize, j: usize| j * n + i;
    for j in 0..n {
        d[j] = v[at(n - 1, j)];
    }
    for i in (1..n).rev() {
        let scale: f64 = d[..i].iter().map(|x| x.abs()).sum();
        let mut h = 0.0;
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
                v[at(j, i)] = 0.0;
            }
        } else {
            for x in &mut d[..i] {
                *x /= scale;
                h += *x * *x;
            }
            let f = d[i - 1];
            let g = if f > 0.0 { -h.sqrt() } else { h.sqrt() };
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            e[..i].fill(0.0);
            for j in 0..i {
                let f = d[j];
                v[at(j, i)] = f;
                let column = &v[j * n..j * n + i];
                let mut g = e[j] + column[j] * f;
                for k in j + 1..i {
                    g += column[k] * d[k];
                    e[k] += column[k] * f;
                }
                e[j] = g;
            }
            let mut f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                let (f, g) = (d[j], e[j]);
                let column = &mut v[j * n..j * n + i];
                for k in j..i {
                    column[k] -= f * e[k] + g * d[k];
                }
                d[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
            }
        }
        d[i] = h;
    }
    if !accumulate {
        for (j, x) in d.iter_mut().enumerate() {
            *x = v[at(j, j)];
        }
        e[0] = 0.0;
        return;
    }
    for i in 0..n - 1 {
        v[at(n - 1, i)] = v[at(i, i)];
        v[at(i, i)] = 1.0;
        let h = d[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                d[k] = v[at(k, i + 1)] / h;
            }
            for j in 0..=i {
                let g: f64 = (0..=i).map(|k| v[at(k, i + 1)] * v[at(k, j)]).sum();
                for k in 0..=i {
                    v[at(k, j)] -= g * d[k];
                }
            }
        }
        for k in 0..=i {
            v[at(k, i + 1)] = 0.0;
        }
    }
    for j in 0..n {
        d[j] = v[at(n - 1, j)];
        v[at(n - 1, j)] = 0.0;
    }
    v[at(n - 1, n - 1)] = 1.0;
    e[0] = 0.0;
}

/// The implicit QL algorithm on the tridiagonal matrix (`d`, `e[1..]`): eigenvalues in `d`; with
/// `accumulate`, the rotations applied to the columns of `v`.
fn ql_implicit(v: &mut [f64], n: usize, d: &mut [f64], e: &mut [f64], accumulate: bool) {
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let (mut shift, mut largest) = (0.0, 0.0f64);
    for l in 0..n {
        largest = largest.max(d[l].abs() + e[l].abs());
        // The first negligible sub-diagonal element at or after l (e[n − 1] = 0 stops the search).
        let m = (l..n).find(|&m| e[m].abs() <= f64::EPSILON * largest).unwrap_or(n - 1);
        if m > l {
            // Two or three sweeps per eigenvalue are usual; the cap only guards against a loop
            // on pathological rounding.
            for _ in 0..64 {
                let g = d[l];
                let p = (d[l + 1] - g) / (2.0 * e[l]);
                let r = p.hypot(1.0).copysign(p);
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let h = g - d[l];
                for x in &mut d[l + 2..] {
                    *x -= h;
                }
                shift += h;
                let mut p = d[m];
                let (mut c, mut c2, mut c3) = (1.0, 1.0, 1.0);
                let el1 = e[l + 1];
                let (mut s, mut s2) = (0.0, 0.0);
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    let g = c * e[i];
                    let h = c * p;
                    let r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    if accumulate {
                        let (left, right) = v.split_at_mut((i + 1) * n);
                        for (a, b) in left[i * n..].iter_mut().zip(&mut right[..n]) {
                            let h = *b;
                            *b = s * *a + c * h;
                            *a = c * *a - s * h;
                        }
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= f64::EPSILON * largest {
                    break;
                }
            }
        }
        d[l] += shift;
        e[l] = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::NoiseRng;

    fn random_symmetric(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = NoiseRng::new(seed);
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let x = rng.uniform() * 2.0 - 1.0;
                a[i * n + j] = x;
                a[j * n + i] = x;
            }
        }
        a
    }

    #[test]
    fn reconstructs_and_is_orthonormal() {
        for (n, seed) in [(1, 0), (2, 1), (7, 2), (40, 3), (97, 4)] {
            let a = random_symmetric(n, seed);
            let eig = SymmetricEigen::new(&a, n, true);
            let v = |i: usize, k: usize| eig.vectors[k * n + i];
            for i in 0..n {
                for j in 0..n {
                    let av: f64 = (0..n).map(|k| v(i, k) * eig.values[k] * v(j, k)).sum();
                    assert!((av - a[i * n + j]).abs() < 1e-12 * n as f64, "n {n}: V Λ Vᵀ differs at ({i}, {j})");
                    let dot: f64 = (0..n).map(|k| v(k, i) * v(k, j)).sum();
                    assert!((dot - f64::from(u8::from(i == j))).abs() < 1e-12 * n as f64, "n {n}: VᵀV not the identity at ({i}, {j})");
                }
            }
            assert!(eig.values.windows(2).all(|w| w[0] <= w[1]));
            let values_only = SymmetricEigen::new(&a, n, false);
            for (x, y) in values_only.values.iter().zip(&eig.values) {
                assert!((x - y).abs() < 1e-12 * n as f64, "n {n}: values alone {x} vs with vectors {y}");
            }
        }
    }

    #[test]
    fn second_difference_matrix_has_its_known_spectrum() {
        // tridiag(−1, 2, −1) of size n: eigenvalues 2 − 2 cos(kπ / (n + 1)), k = 1..n.
        let n = 64;
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            a[i * n + i] = 2.0;
            if i + 1 < n {
                a[i * n + i + 1] = -1.0;
                a[(i + 1) * n + i] = -1.0;
            }
        }
        let eig = SymmetricEigen::new(&a, n, false);
        for (k, value) in eig.values.iter().enumerate() {
            let expected = 2.0 - 2.0 * ((k + 1) as f64 * std::f64::consts::PI / (n + 1) as f64).cos();
            assert!((value - expected).abs() < 1e-13, "eigenvalue {k}: {value} vs {expected}");
        }
    }

    #[test]
    fn rank_deficient_matrix_has_zero_eigenvalues() {
        // x xᵀ + y yᵀ: two nonzero eigenvalues, the rest zero (to rounding).
        let n = 30;
        let x: Vec<f64> = (0..n).map(|i| (i as f64 * 0.3).sin()).collect();
        let y: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).cos()).collect();
        let a: Vec<f64> = (0..n * n).map(|k| x[k / n] * x[k % n] + y[k / n] * y[k % n]).collect();
        let eig = SymmetricEigen::new(&a, n, false);
        let trace: f64 = (0..n).map(|i| a[i * n + i]).sum();
        assert!(eig.values[..n - 2].iter().all(|v| v.abs() < 1e-13), "{:?}", &eig.values[..n - 2]);
        assert!((eig.values[n - 2] + eig.values[n - 1] - trace).abs() < 1e-12);
    }
}
