//! Progress bars for long work (puts, gets, collections, `check`): bytes done, rate and time
//! left on standard error, drawn only when standard error is a terminal and never when the
//! command prints JSON, so scripts and logs never see one.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

/// A byte bar of `total` bytes (0 when not known yet: set it with `set_length`), hidden for
/// `--json` or when standard error is not a terminal.
pub fn bytes(total: u64, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .expect("a valid template"),
    );
    bar
}

/// Passes writes through and moves `bar` by the bytes written.
pub struct Counting<W> {
    /// Where the bytes go.
    pub inner: W,
    /// What they move.
    pub bar: ProgressBar,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
