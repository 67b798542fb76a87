//! [`named_choices!`](macro@crate::named_choices): the names of a fieldless
//! enum's choices (a loss, a schedule, a sampler), written once, with what
//! every such enum needs from them: the list, `name()`, `Display` and a
//! `FromStr` whose error names the valid choices.

/// Names the choices of a fieldless, `Copy` enum of a model crate (one
/// whose `Error` comes from [`family_error!`](macro@crate::family_error)):
///
/// ```ignore
/// deepgen_core::named_choices!(GanLoss, "loss" {
///     Minimax => "minimax",
///     NonSaturating => "non-saturating",
/// });
/// ```
///
/// generates `GanLoss::ALL` (every choice, in the order written),
/// `GanLoss::name(self)` (the flag's and the config's name), `Display` (the
/// name) and `FromStr` (the name back; anything else is
/// `Error::invalid_display("loss", s, "one of minimax, non-saturating")`).
#[macro_export]
macro_rules! named_choices {
    ($ty:ident, $what:literal { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every choice, in the order of their names.
            pub const ALL: [$ty; [$($name),+].len()] = [$($ty::$variant),+];

            /// The name of the flag and of the config value.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = Error;

            fn from_str(s: &str) -> std::result::Result<Self, Error> {
                Self::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|c| c.name()).collect();
                    Error::invalid_display($what, s, format!("one of {}", names.join(", ")))
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::family_error!("deepgen-core's test");

    /// A choice with three names.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Colour {
        Red,
        Green,
        DeepBlue,
    }

    crate::named_choices!(Colour, "colour" {
        Red => "red",
        Green => "green",
        DeepBlue => "deep-blue",
    });

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() -> Result<()> {
        assert_eq!(Colour::ALL, [Colour::Red, Colour::Green, Colour::DeepBlue]);
        for c in Colour::ALL {
            assert_eq!(c.name().parse::<Colour>()?, c);
            assert_eq!(c.to_string(), c.name());
        }
        assert_eq!(Colour::DeepBlue.name(), "deep-blue");
        let err = "blue".parse::<Colour>().unwrap_err().to_string();
        assert_eq!(err, "invalid colour = blue: one of red, green, deep-blue");
        Ok(())
    }
}
