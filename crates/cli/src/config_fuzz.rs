//! `config.toml` fed arbitrary and adversarially mutated text (issue 18).
//!
//! Every family's `deepgen train <family> --config FILE` is taken up to the
//! point where it would open the device: the file is read and parsed
//! ([`TrainRun::start`]: `RunFile::read`, then the settings resolved), the
//! family's flags applied and its configuration validated (`apply_flags`,
//! which calls the library's `validate()`; for `cnn` the spec parsed and
//! checked; for `simclr` `validate()` and the image shape), the run's
//! optimizer steps counted, and an accepted configuration written back as
//! the run's `config.toml` and read again.
//! Each step gives `Ok` or a clean error naming the file; none panics.
//!
//! The inputs: arbitrary bytes, arbitrary text, and a valid `config.toml` of
//! the family with up to four mutations of its TOML: a key deleted, a value
//! replaced by one of its own type at a limit (`i64::MAX`, `-1`, `nan`,
//! `inf`, `1e308`, huge array entries, unknown enum words, specs with huge
//! sizes) or by one of another type, an unknown key added, or the text cut
//! short.

use crate::args::{DataArg, RunFlags};
use crate::commands::ae::AeCommand;
use crate::commands::cnn::{CnnTable, check_mnist_spec, parse_spec};
use crate::commands::diffusion::DiffusionCommand;
use crate::commands::gan::GanCommand;
use crate::commands::hvae::HvaeCommand;
use crate::commands::score::ScoreCommand;
use crate::commands::simclr::SimClrTraining;
use crate::commands::vae::VaeCommand;
use crate::run::{ModelCommand, NoTraining, RunDefaults, RunFile, TrainRun};
use clap::Parser;
use deepgen_cnn::DEFAULT_MNIST_SPEC;
use deepgen_contrastive::{SimClr, SimClrConfig};
use deepgen_core::TrainableModel;
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use toml::{Table, Value};

/// A family's own flags, none given (what `--config` alone leaves them).
#[derive(Debug, Parser)]
struct NoFlags<F: clap::Args> {
    #[command(flatten)]
    flags: F,
}

fn no_flags<F: clap::Args>() -> F {
    NoFlags::<F>::try_parse_from(["deepgen"])
        .expect("every family flag is optional")
        .flags
}

/// Run defaults for the families whose defaults are private to their
/// module; any positive values do.
const SOME_DEFAULTS: RunDefaults = RunDefaults {
    epochs: 3,
    batch_size: 64,
    lr: 1e-3,
};

/// The `RunFlags` of `deepgen train <family> --config <dir>/config.toml --out <dir>/run`.
fn flags_for(dir: &Path) -> RunFlags {
    RunFlags {
        config: Some(dir.join("config.toml")),
        out: Some(dir.join("run")),
        ..Default::default()
    }
}

/// `Ok(false)` (a rejected file) when `err`'s chain names the config file,
/// as every error of reading and resolving a `--config` does; else fails.
fn names_the_file(err: &anyhow::Error, dir: &Path) -> Result<bool, TestCaseError> {
    let message = format!("{err:#}");
    let path = dir.join("config.toml").display().to_string();
    prop_assert!(message.contains(&path), "{message}");
    Ok(false)
}

/// An accepted configuration written as the run's `config.toml` reads back;
/// `Ok(true)`: the file got all the way through.
fn write_and_read_back<C, T>(run: &TrainRun, family: &str, config: C, training: T) -> Result<bool, TestCaseError>
where
    C: Serialize + DeserializeOwned + Default,
    T: Serialize + DeserializeOwned + Default,
{
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = run.file(family, config, training);
    file.write(dir.path())
        .map_err(|e| TestCaseError::fail(format!("cannot write an accepted config: {e:#}")))?;
    RunFile::<C, T>::read(&dir.path().join("config.toml"), family)
        .map_err(|e| TestCaseError::fail(format!("cannot read back an accepted config: {e:#}")))?;
    Ok(true)
}

/// The run's optimizer steps on MNIST's 60,000 training images are counted,
/// or a clean error when the file's epochs make too many.
fn check_total_steps(run: &TrainRun) -> Result<(), TestCaseError> {
    let n_batches = 60_000usize.div_ceil(run.settings.batch_size);
    let steps = run.total_steps(n_batches);
    prop_assert_eq!(steps.is_ok(), n_batches.checked_mul(run.settings.epochs).is_some());
    Ok(())
}

/// `deepgen train <C's family> --config` on `bytes`, up to opening the
/// device; `Ok(true)` when the file is accepted, `Ok(false)` for a clean
/// error.
fn check_model_command<C: ModelCommand>(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(dir.path().join("config.toml"), bytes).expect("write the config");
    let family = <C::Model as TrainableModel>::FAMILY;
    let flags = flags_for(dir.path());
    let started = TrainRun::start::<_, C::Training>(&flags, family, C::defaults);
    let (run, mut config, mut training) = match started {
        Ok(started) => started,
        Err(err) => return names_the_file(&err, dir.path()),
    };
    if let Err(err) = C::apply_flags(&no_flags::<C::Flags>(), &run.settings, &mut config, &mut training) {
        // `train` adds the file's name to this error as context; the error
        // itself must merely not be a panic.
        let message = format!("{err:#}");
        prop_assert!(!message.is_empty());
        return Ok(false);
    }
    let _ = C::warning(&config, &run.settings);
    check_total_steps(&run)?;
    write_and_read_back(&run, family, config, training)
}

/// `deepgen train cnn --config` on `bytes`, up to opening the device.
fn check_cnn(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(dir.path().join("config.toml"), bytes).expect("write the config");
    let started = TrainRun::start::<CnnTable, NoTraining>(&flags_for(dir.path()), "cnn", |_| SOME_DEFAULTS);
    let (run, table, training) = match started {
        Ok(started) => started,
        Err(err) => return names_the_file(&err, dir.path()),
    };
    let spec = match parse_spec(table.spec.as_deref().unwrap_or(DEFAULT_MNIST_SPEC)) {
        Ok(spec) => spec,
        Err(err) => {
            prop_assert!(format!("{err:#}").starts_with("invalid spec"), "{err:#}");
            return Ok(false);
        }
    };
    if check_mnist_spec(&spec).is_err() {
        return Ok(false);
    }
    let table = CnnTable {
        spec: Some(spec.to_string()),
    };
    write_and_read_back(&run, "cnn", table, training)
}

/// `deepgen train simclr --config` on `bytes`, up to opening the device.
fn check_simclr(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(dir.path().join("config.toml"), bytes).expect("write the config");
    let started =
        TrainRun::start::<SimClrConfig, SimClrTraining>(&flags_for(dir.path()), SimClr::FAMILY, |_| SOME_DEFAULTS);
    let (run, config, training) = match started {
        Ok(started) => started,
        Err(err) => return names_the_file(&err, dir.path()),
    };
    if config.validate().is_err() || config.image_shape().is_err() {
        return Ok(false);
    }
    check_total_steps(&run)?;
    write_and_read_back(&run, SimClr::FAMILY, config, training)
}

/// The families, each with its check and a valid `config.toml` of its own.
#[derive(Debug, Clone, Copy)]
enum Family {
    Vae,
    Ae,
    Hvae,
    Gan,
    Score,
    Diffusion,
    Cnn,
    SimClr,
}

const FAMILIES: [Family; 8] = [
    Family::Vae,
    Family::Ae,
    Family::Hvae,
    Family::Gan,
    Family::Score,
    Family::Diffusion,
    Family::Cnn,
    Family::SimClr,
];

impl Family {
    /// Whether `bytes` as its `config.toml` is accepted (`Ok(false)`: a
    /// clean error).
    fn check(self, bytes: &[u8]) -> Result<bool, TestCaseError> {
        match self {
            Family::Vae => check_model_command::<VaeCommand>(bytes),
            Family::Ae => check_model_command::<AeCommand>(bytes),
            Family::Hvae => check_model_command::<HvaeCommand>(bytes),
            Family::Gan => check_model_command::<GanCommand>(bytes),
            Family::Score => check_model_command::<ScoreCommand>(bytes),
            Family::Diffusion => check_model_command::<DiffusionCommand>(bytes),
            Family::Cnn => check_cnn(bytes),
            Family::SimClr => check_simclr(bytes),
        }
    }

    /// The `config.toml` a run of the family writes with its defaults.
    fn valid_config(self) -> Table {
        fn of<C: ModelCommand>(data: DataArg) -> String {
            let dir = tempfile::tempdir().expect("a temporary folder");
            let flags = RunFlags {
                data: Some(data),
                out: Some(dir.path().join("run")),
                ..Default::default()
            };
            let family = <C::Model as TrainableModel>::FAMILY;
            let (run, _, training) =
                TrainRun::start::<<C::Model as TrainableModel>::Config, C::Training>(&flags, family, C::defaults)
                    .expect("the defaults start");
            let mut config = C::default_config(data);
            let mut training = training;
            C::apply_flags(&no_flags::<C::Flags>(), &run.settings, &mut config, &mut training)
                .expect("the defaults are valid");
            toml::to_string(&run.file(family, config, training)).expect("write TOML")
        }
        fn plain<C: Serialize + Default, T: Serialize + Default>(family: &str, config: C) -> String {
            let dir = tempfile::tempdir().expect("a temporary folder");
            let flags = RunFlags {
                out: Some(dir.path().join("run")),
                ..Default::default()
            };
            let (run, _, _) =
                TrainRun::start::<CnnTable, NoTraining>(&flags, family, |_| SOME_DEFAULTS).expect("the defaults start");
            toml::to_string(&run.file(family, config, T::default())).expect("write TOML")
        }
        let text = match self {
            Family::Vae => of::<VaeCommand>(DataArg::Mnist),
            Family::Ae => of::<AeCommand>(DataArg::Mnist),
            Family::Hvae => of::<HvaeCommand>(DataArg::Mnist),
            Family::Gan => of::<GanCommand>(DataArg::Ring),
            Family::Score => of::<ScoreCommand>(DataArg::Mixture),
            Family::Diffusion => of::<DiffusionCommand>(DataArg::Moons),
            Family::Cnn => plain::<CnnTable, NoTraining>(
                "cnn",
                CnnTable {
                    spec: Some(DEFAULT_MNIST_SPEC.into()),
                },
            ),
            Family::SimClr => plain::<SimClrConfig, SimClrTraining>("simclr", SimClrConfig::default()),
        };
        text.parse().expect("a written config parses")
    }
}

/// An integer at the limits: 0, ±1, `i64::MAX`, `i64::MIN`, powers of two.
fn arb_integer() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        Just(1),
        Just(-1),
        Just(2),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(1 << 31),
        Just(1 << 32),
        Just(1 << 53),
        Just(1 << 62),
        any::<i64>(),
    ]
}

/// A float at the limits: NaN, ±∞, ±0, ±1e308, a subnormal.
fn arb_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(1e308),
        Just(-1e308),
        Just(1e-320),
        Just(0.5),
        Just(1.0),
        Just(-1.0),
        Just(1.0 - f64::EPSILON),
        any::<f64>(),
    ]
}

/// A word some enum, device or spec field might take, or nearly.
fn arb_word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "",
            "mnist",
            "fashion-mnist",
            "ring",
            "grid",
            "moons",
            "swiss-roll",
            "mixture",
            "cpu",
            "cuda",
            "cuda:18446744073709551616",
            "metal",
            "auto",
            "mlp",
            "conv",
            "dcgan",
            "unet",
            "bernoulli",
            "gaussian",
            "learned",
            "hinge",
            "both",
            "none",
            "linear",
            "cosine",
            "epsilon",
            "v",
            "INPUT-28x28x1 FLATTEN FC-10",
            "INPUT-784 FC-10",
            "INPUT-28x28x1 AVGPOOL-0 FLATTEN FC-10",
            "INPUT-28x28x1 CONV-99999999999999999999-1 FLATTEN FC-10",
            "INPUT-28x28x1 FLATTEN FC-18446744073709551615 FC-10",
            "INPUT-18446744073709551615x2x1 FLATTEN FC-10",
            "INPUT-28x28x1 CONVT-4-1-s9223372036854775807 FLATTEN FC-10",
            "INPUT-28x28x1 CONV-3-8-p9223372036854775807 FLATTEN FC-10",
            "vae",
            "gan",
        ])
        .prop_map(str::to_string),
        1 => ".{0,12}",
    ]
}

/// A TOML value of any type, at the limits of its type.
fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        4 => arb_integer().prop_map(Value::Integer),
        3 => arb_float().prop_map(Value::Float),
        3 => arb_word().prop_map(Value::String),
        1 => any::<bool>().prop_map(Value::Boolean),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| Value::Array(v.into_iter().collect())),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..3)
                .prop_map(|kv| Value::Table(kv.into_iter().collect::<Table>())),
        ]
    })
}

/// Values of every type at once, for a mutation that keeps a key's type
/// (and so gets past serde to the validation behind it).
#[derive(Debug, Clone)]
struct SameType {
    integer: i64,
    float: f64,
    word: String,
    integers: Vec<i64>,
    floats: Vec<f64>,
}

fn arb_same_type() -> impl Strategy<Value = SameType> {
    (
        arb_integer(),
        arb_float(),
        arb_word(),
        prop::collection::vec(arb_integer(), 0..4),
        prop::collection::vec(arb_float(), 0..4),
    )
        .prop_map(|(integer, float, word, integers, floats)| SameType {
            integer,
            float,
            word,
            integers,
            floats,
        })
}

impl SameType {
    /// A new value of `old`'s type (arrays: of its first element's type).
    fn like(&self, old: &Value) -> Value {
        match old {
            Value::Integer(_) => Value::Integer(self.integer),
            Value::Float(_) => Value::Float(self.float),
            Value::String(_) => Value::String(self.word.clone()),
            Value::Boolean(b) => Value::Boolean(!b),
            Value::Array(items) => match items.first() {
                Some(Value::Float(_)) => Value::Array(self.floats.iter().map(|&f| Value::Float(f)).collect()),
                _ => Value::Array(self.integers.iter().map(|&i| Value::Integer(i)).collect()),
            },
            other => other.clone(),
        }
    }
}

/// A mutation of a config's TOML. Indices pick among the keys present.
#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    SameType(usize, SameType),
    Replace(usize, Value),
    AddKey(usize, String, Value),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => any::<usize>().prop_map(Mutation::Delete),
        6 => (any::<usize>(), arb_same_type()).prop_map(|(at, v)| Mutation::SameType(at, v)),
        2 => (any::<usize>(), arb_value()).prop_map(|(at, v)| Mutation::Replace(at, v)),
        1 => (any::<usize>(), "[a-z_]{1,10}", arb_value()).prop_map(|(at, k, v)| Mutation::AddKey(at, k, v)),
    ]
}

/// Every key path of `table` (tables nested in tables included), in order.
fn key_paths(table: &Table, prefix: &[String], out: &mut Vec<Vec<String>>) {
    for (key, value) in table {
        let mut path = prefix.to_vec();
        path.push(key.clone());
        out.push(path.clone());
        if let Value::Table(inner) = value {
            key_paths(inner, &path, out);
        }
    }
}

/// The table holding the last key of `path`.
fn parent_of<'a>(table: &'a mut Table, path: &[String]) -> Option<&'a mut Table> {
    let (_, parents) = path.split_last()?;
    let mut current = table;
    for key in parents {
        current = current.get_mut(key)?.as_table_mut()?;
    }
    Some(current)
}

fn mutate(table: &mut Table, mutation: &Mutation) {
    let mut paths = Vec::new();
    key_paths(table, &[], &mut paths);
    if paths.is_empty() {
        return;
    }
    let pick = |at: usize| paths[at % paths.len()].clone();
    match mutation {
        Mutation::Delete(at) => {
            let path = pick(*at);
            if let (Some(parent), Some(key)) = (parent_of(table, &path), path.last()) {
                parent.remove(key);
            }
        }
        Mutation::SameType(at, values) => {
            let path = pick(*at);
            if let (Some(parent), Some(key)) = (parent_of(table, &path), path.last())
                && let Some(old) = parent.get(key)
            {
                let new = values.like(old);
                parent.insert(key.clone(), new);
            }
        }
        Mutation::Replace(at, value) => {
            let path = pick(*at);
            if let (Some(parent), Some(key)) = (parent_of(table, &path), path.last()) {
                parent.insert(key.clone(), value.clone());
            }
        }
        Mutation::AddKey(at, key, value) => {
            // Into the table of a picked key (or the top level).
            let path = pick(*at);
            match parent_of(table, &path) {
                Some(parent) => parent.insert(key.clone(), value.clone()),
                None => table.insert(key.clone(), value.clone()),
            };
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary bytes as `config.toml`, for every family.
    #[test]
    fn prop_random_bytes_as_config_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        for family in FAMILIES {
            family.check(&bytes)?;
        }
    }

    /// Arbitrary text, and text with TOML's punctuation, as `config.toml`.
    #[test]
    fn prop_random_text_as_config_never_panics(
        text in prop_oneof![".{0,120}", "[\\[\\]a-z_=\"'0-9.\\n -]{0,120}"],
    ) {
        for family in FAMILIES {
            family.check(text.as_bytes())?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A family's valid `config.toml` with up to four mutations: keys
    /// deleted, values of the wrong type or at a limit, unknown keys; and
    /// sometimes the text cut short.
    #[test]
    fn prop_mutated_config_never_panics(
        family in prop::sample::select(FAMILIES.to_vec()),
        mutations in prop::collection::vec(arb_mutation(), 1..5),
        cut in prop::option::weighted(0.1, any::<usize>()),
    ) {
        let mut table = family.valid_config();
        for m in &mutations {
            mutate(&mut table, m);
        }
        let mut text = toml::to_string(&table).unwrap_or_default();
        if let Some(cut) = cut {
            let mut at = cut % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.truncate(at);
        }
        family.check(text.as_bytes())?;
    }
}

/// Every family's own valid `config.toml` is accepted (so the mutations
/// start from a file that gets all the way through).
#[test]
fn every_valid_config_is_accepted() {
    for family in FAMILIES {
        let text = toml::to_string(&family.valid_config()).expect("write TOML");
        assert_eq!(family.check(text.as_bytes()).ok(), Some(true), "{family:?}: {text}");
    }
}
