//! A small command-line parser for the examples, where a program of your own
//! would use `clap`: a table of flags becomes a struct, its defaults, a usage
//! line and a parser whose errors name the flag.

use std::{str::FromStr, time::Duration};

/// The program's name and what checks the options parsed, then one line per
/// option: its field, type and default, its flag, the flag's value in the usage,
/// and how the value is read (given the options so far).
macro_rules! options {
    ($program:literal, $check:expr; $($field:ident: $ty:ty = $default:expr, $flag:literal $value:literal, $read:expr;)*) => {
        /// The program's settings, from the command line.
        #[derive(Debug, Clone)]
        pub struct Options { $(pub $field: $ty,)* }
        impl Default for Options { fn default() -> Self { Self { $($field: $default,)* } } }
        const USAGE: &str = concat!("usage: ", $program, $(" [", $flag, $value, "]",)*);
        impl Options {
            /// The options the arguments (the program's name left out) give.
            pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
                let mut o = Options::default();
                while let Some(flag) = args.next() {
                    let arg = &mut Arg { flag: &flag, rest: &mut args };
                    match arg.flag {
                        $($flag => {
                            let read: fn(&Self, &mut Arg<'_>) -> Result<$ty, String> = $read;
                            o.$field = read(&o, arg)?;
                        })*
                        "-h" | "--help" => return Err(USAGE.into()),
                        other => return Err(format!("unknown flag {other}\n{USAGE}")),
                    }
                }
                let check: fn(&Self) -> Result<(), String> = $check;
                check(&o).map(|()| o)
            }
        }
    };
}
pub(crate) use options;

/// An error, after the flag (or other name) it is about.
pub fn on<E: std::fmt::Display>(flag: &str) -> impl Fn(E) -> String + '_ {
    move |e| format!("{flag}: {e}")
}

/// `n` milliseconds.
pub const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A flag, and the arguments its value comes from.
pub struct Arg<'a> {
    pub flag: &'a str,
    pub rest: &'a mut dyn Iterator<Item = String>,
}

impl Arg<'_> {
    /// The next argument, parsed: an error names the flag.
    pub fn value<T: FromStr<Err: std::fmt::Display>>(&mut self) -> Result<T, String> {
        let needs = || format!("{} needs a value", self.flag);
        let text = self.rest.next().ok_or_else(needs)?;
        text.parse().map_err(on(self.flag))
    }

    /// The next argument, a number of milliseconds.
    pub fn ms(&mut self) -> Result<Duration, String> {
        self.value().map(ms)
    }

    /// The next argument, parsed, given: `Some`.
    pub fn some<T: FromStr<Err: std::fmt::Display>>(&mut self) -> Result<Option<T>, String> {
        self.value().map(Some)
    }

    /// The next argument, a number of milliseconds, given: `Some`.
    pub fn some_ms(&mut self) -> Result<Option<Duration>, String> {
        self.ms().map(Some)
    }

    /// The next argument, a number from `min` to `max`.
    pub fn within<T>(&mut self, min: T, max: T) -> Result<T, String>
    where
        T: FromStr<Err: std::fmt::Display> + PartialOrd + std::fmt::Display,
    {
        match self.value()? {
            n if n < min => Err(format!("{}: at least {min}", self.flag)),
            n if n > max => Err(format!("{}: at most {max}", self.flag)),
            n => Ok(n),
        }
    }

    /// The next argument, two values and a comma between (`what` names them).
    pub fn pair<A, B>(&mut self, what: &str) -> Result<(A, B), String>
    where
        A: FromStr,
        B: FromStr,
    {
        let text: String = self.value()?;
        let bad = || format!("{}: {what}, not {text:?}", self.flag);
        let (a, b) = text.split_once(',').ok_or_else(bad)?;
        Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
    }
}

/// Ends the program with `message` on standard error and `code`.
pub fn exit(message: impl std::fmt::Display, code: i32) -> ! {
    eprintln!("{message}");
    std::process::exit(code)
}
