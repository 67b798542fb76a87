//! Augmentations: same seed same views, a different draw for every image,
//! the warp against a direct per-pixel computation of bilinear sampling,
//! the identity transforms, and each augmentation against its formula.

use candle::{DType, Device, Tensor};
use deepgen_contrastive::{Augmentation, Augmentations, warp};
use deepgen_core::rng::{rand_uniform, rng_from_seed};
use proptest::prelude::*;

fn images(seed: u64, n: usize, c: usize, h: usize, w: usize) -> Tensor {
    rand_uniform(&mut rng_from_seed(seed), (n, c, h, w), 0.0, 1.0, &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// `grid_sample` by its definition: the output at normalised `q` is
/// `Σ_{y,x} I[y, x] max(0, 1 − |u − x|) max(0, 1 − |v − y|)` over every
/// input pixel, `(u, v)` the pixel coordinates of `q` (zero outside).
fn direct_sample(image: &[f32], h: usize, w: usize, theta: &[f64; 6]) -> Vec<f64> {
    let mut out = Vec::with_capacity(h * w);
    for i in 0..h {
        for j in 0..w {
            let xn = (2.0 * j as f64 + 1.0) / w as f64 - 1.0;
            let yn = (2.0 * i as f64 + 1.0) / h as f64 - 1.0;
            let xs = theta[0] * xn + theta[1] * yn + theta[2];
            let ys = theta[3] * xn + theta[4] * yn + theta[5];
            let u = ((xs + 1.0) * w as f64 - 1.0) / 2.0;
            let v = ((ys + 1.0) * h as f64 - 1.0) / 2.0;
            let mut sum = 0.0;
            for y in 0..h {
                for x in 0..w {
                    let tent = (1.0 - (u - x as f64).abs()).max(0.0) * (1.0 - (v - y as f64).abs()).max(0.0);
                    sum += tent * f64::from(image[y * w + x]);
                }
            }
            out.push(sum);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Random affine matrices on random images of two channels: every
    /// output pixel equals the direct sum.
    #[test]
    fn prop_warp_matches_direct_bilinear_sampling(seed in 0u64..10_000, h in 3usize..9, w in 3usize..9,
        a in -1.5f64..1.5, b in -1.5f64..1.5, c in -0.6f64..0.6, d in -1.5f64..1.5, e in -1.5f64..1.5, f in -0.6f64..0.6) {
        let xs = images(seed, 2, 2, h, w);
        let thetas = [[a, b, c, d, e, f], [e, -b, f, -d, a, c]];
        let out = values(&warp(&xs, &thetas).unwrap());
        let input = values(&xs);
        for (k, theta) in thetas.iter().enumerate() {
            for ch in 0..2 {
                let offset = (k * 2 + ch) * h * w;
                let expected = direct_sample(&input[offset..offset + h * w], h, w, theta);
                for (p, want) in expected.iter().enumerate() {
                    let got = f64::from(out[offset + p]);
                    prop_assert!((got - want).abs() < 1e-5, "image {k} channel {ch} pixel {p}: {got} vs {want}");
                }
            }
        }
    }
}

#[test]
fn quarter_turn_and_one_pixel_shift_are_exact() {
    let xs = images(1, 1, 1, 6, 6);
    let input = values(&xs);
    // θ = [[0, −1, 0], [1, 0, 0]]: output (i, j) reads input (j, W − 1 − i).
    let turned = values(&warp(&xs, &[[0.0, -1.0, 0.0, 1.0, 0.0, 0.0]]).unwrap());
    for i in 0..6 {
        for j in 0..6 {
            assert_eq!(turned[i * 6 + j], input[j * 6 + (5 - i)]);
        }
    }
    // A translation of 2/W normalised units reads one pixel to the right; the last column is outside.
    let shifted = values(&warp(&xs, &[[1.0, 0.0, 2.0 / 6.0, 0.0, 1.0, 0.0]]).unwrap());
    for i in 0..6 {
        for j in 0..6 {
            let want = if j < 5 { input[i * 6 + j + 1] } else { 0.0 };
            assert!((shifted[i * 6 + j] - want).abs() < 1e-6);
        }
    }
}

#[test]
fn identity_transforms_return_the_input() {
    let xs = images(2, 3, 1, 10, 10);
    let identity = Augmentations(vec![
        Augmentation::Affine {
            degrees: 0.0,
            scale: (1.0, 1.0),
            translate: 0.0,
        },
        Augmentation::ResizedCrop {
            scale: (1.0, 1.0),
            ratio: (1.0, 1.0),
        },
        Augmentation::GaussianNoise { sd: 0.0 },
        Augmentation::Blur {
            sigma: (1.0, 2.0),
            p: 0.0,
        },
        Augmentation::Cutout { size: 4, p: 0.0 },
        Augmentation::BrightnessContrast {
            brightness: 0.0,
            contrast: 0.0,
        },
    ]);
    let out = identity.apply(&xs, &mut rng_from_seed(3)).unwrap();
    assert_eq!(values(&out), values(&xs));
    assert_eq!(
        values(&Augmentations::default().apply(&xs, &mut rng_from_seed(3)).unwrap()),
        values(&xs)
    );
}

#[test]
fn same_seed_same_views_and_each_image_its_own_draw() {
    // Eight copies of one image: after augmentation no two are alike.
    let one = images(4, 1, 1, 28, 28);
    let xs = one.broadcast_as((8, 1, 28, 28)).unwrap().contiguous().unwrap();
    let recipe = Augmentations::mnist_default();
    let a = recipe.apply(&xs, &mut rng_from_seed(5)).unwrap();
    let b = recipe.apply(&xs, &mut rng_from_seed(5)).unwrap();
    let c = recipe.apply(&xs, &mut rng_from_seed(6)).unwrap();
    assert_eq!(values(&a), values(&b));
    assert_ne!(values(&a), values(&c));
    let rows: Vec<Vec<f32>> = (0..8).map(|k| values(&a.get(k).unwrap())).collect();
    for i in 0..8 {
        for j in i + 1..8 {
            assert_ne!(rows[i], rows[j], "images {i} and {j} got the same draw");
        }
    }
    // Each augmentation alone draws per image too.
    for augmentation in [
        Augmentation::ResizedCrop {
            scale: (0.3, 1.0),
            ratio: (0.75, 4.0 / 3.0),
        },
        Augmentation::Blur {
            sigma: (0.1, 2.0),
            p: 1.0,
        },
        Augmentation::BrightnessContrast {
            brightness: 0.5,
            contrast: 0.5,
        },
    ] {
        let out = augmentation.apply(&xs, &mut rng_from_seed(7)).unwrap();
        let rows: Vec<Vec<f32>> = (0..8).map(|k| values(&out.get(k).unwrap())).collect();
        assert!(rows.windows(2).all(|p| p[0] != p[1]), "{augmentation:?}");
    }
}

#[test]
fn cutout_zeroes_one_square_per_cut_image() {
    let ones = Tensor::ones((6, 1, 12, 12), DType::F32, &Device::Cpu).unwrap();
    let out = Augmentation::Cutout { size: 5, p: 1.0 }
        .apply(&ones, &mut rng_from_seed(8))
        .unwrap();
    for k in 0..6 {
        let v = values(&out.get(k).unwrap());
        let zeros: Vec<usize> = (0..144).filter(|&p| v[p] == 0.0).collect();
        assert_eq!(zeros.len(), 25);
        let (rows, cols): (Vec<usize>, Vec<usize>) = zeros.iter().map(|p| (p / 12, p % 12)).unzip();
        assert_eq!(rows.iter().max().unwrap() - rows.iter().min().unwrap(), 4);
        assert_eq!(cols.iter().max().unwrap() - cols.iter().min().unwrap(), 4);
    }
}

/// Brightness then contrast by their formulas, with the factors each image
/// drew: recovered from a constant patch and the image mean.
#[test]
fn brightness_and_contrast_follow_their_formulas() {
    let xs = images(9, 4, 1, 6, 6).affine(0.5, 0.25).unwrap(); // in [0.25, 0.75]
    let augmentation = Augmentation::BrightnessContrast {
        brightness: 0.2,
        contrast: 0.3,
    };
    let out = augmentation.apply(&xs, &mut rng_from_seed(10)).unwrap();
    // Redraw the factors as the augmentation does: per image b then c.
    let mut rng = rng_from_seed(10);
    for k in 0..4 {
        let b = 0.8 + 0.4 * rand::Rng::random::<f64>(&mut rng);
        let c = 0.7 + 0.6 * rand::Rng::random::<f64>(&mut rng);
        let x: Vec<f64> = values(&xs.get(k).unwrap()).iter().map(|&v| f64::from(v)).collect();
        let bright: Vec<f64> = x.iter().map(|v| (b * v).clamp(0.0, 1.0)).collect();
        let mean = bright.iter().sum::<f64>() / bright.len() as f64;
        let got = values(&out.get(k).unwrap());
        for (p, v) in bright.iter().enumerate() {
            let want = (c * v + (1.0 - c) * mean).clamp(0.0, 1.0);
            assert!((f64::from(got[p]) - want).abs() < 1e-5, "image {k} pixel {p}");
        }
    }
}

/// A blur of σ against the direct 2-D sum with reflected borders.
#[test]
fn blur_matches_a_direct_convolution() {
    let (h, w) = (7, 9);
    let xs = images(11, 1, 1, h, w);
    let out = values(
        &Augmentation::Blur {
            sigma: (0.8, 0.8),
            p: 1.0,
        }
        .apply(&xs, &mut rng_from_seed(12))
        .unwrap(),
    );
    let input = values(&xs);
    let r = 3isize; // ⌈3 · 0.8⌉
    let weights: Vec<f64> = (-r..=r).map(|d| (-(d * d) as f64 / (2.0 * 0.64)).exp()).collect();
    let total: f64 = weights.iter().sum();
    let reflect = |i: isize, len: isize| {
        if i < 0 {
            -i
        } else if i >= len {
            2 * (len - 1) - i
        } else {
            i
        }
    };
    for i in 0..h as isize {
        for j in 0..w as isize {
            let mut sum = 0.0;
            for (a, wy) in (-r..=r).zip(&weights) {
                for (b, wx) in (-r..=r).zip(&weights) {
                    let (y, x) = (reflect(i + a, h as isize), reflect(j + b, w as isize));
                    sum += wy * wx / (total * total) * f64::from(input[(y * w as isize + x) as usize]);
                }
            }
            let got = f64::from(out[(i * w as isize + j) as usize]);
            assert!((got - sum).abs() < 1e-5, "({i}, {j}): {got} vs {sum}");
        }
    }
}

#[test]
fn bad_parameters_are_errors() {
    let xs = images(13, 2, 1, 8, 8);
    let cases = [
        (Augmentation::Cutout { size: 9, p: 0.5 }, "cutout size"),
        (Augmentation::Cutout { size: 0, p: 0.5 }, "cutout size"),
        (Augmentation::Cutout { size: 2, p: 1.5 }, "cutout p"),
        (Augmentation::GaussianNoise { sd: -0.1 }, "noise sd"),
        (
            Augmentation::Blur {
                sigma: (1.0, 3.0),
                p: 0.5,
            },
            "blur sigma",
        ),
        (
            Augmentation::ResizedCrop {
                scale: (0.5, 1.5),
                ratio: (1.0, 1.0),
            },
            "resized-crop scale",
        ),
        (
            Augmentation::Affine {
                degrees: f64::NAN,
                scale: (1.0, 1.0),
                translate: 0.0,
            },
            "affine degrees",
        ),
    ];
    for (augmentation, name) in cases {
        let err = Augmentations(vec![augmentation.clone()])
            .apply(&xs, &mut rng_from_seed(0))
            .unwrap_err()
            .to_string();
        assert!(err.contains(name), "{augmentation:?}: {err}");
    }
    let flat = Tensor::zeros((2, 64), DType::F32, &Device::Cpu).unwrap();
    assert!(
        Augmentations::mnist_default()
            .apply(&flat, &mut rng_from_seed(0))
            .is_err()
    );
}

#[test]
fn a_recipe_round_trips_through_toml() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Table {
        augmentations: Augmentations,
    }
    let table = Table {
        augmentations: Augmentations(vec![
            Augmentation::ResizedCrop {
                scale: (0.5, 1.0),
                ratio: (0.75, 1.25),
            },
            Augmentation::Blur {
                sigma: (0.1, 1.0),
                p: 0.5,
            },
        ]),
    };
    let text = toml::to_string(&table).unwrap();
    assert!(text.contains("kind = \"resized-crop\""), "{text}");
    assert_eq!(toml::from_str::<Table>(&text).unwrap(), table);
    let unknown = "[[augmentations]]\nkind = \"gaussian-noise\"\nsd = 0.1\nsize = 3\n";
    assert!(toml::from_str::<Table>(unknown).is_err());
}
