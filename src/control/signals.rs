//! Turns SIGHUP, SIGTERM and SIGINT into control events, on a thread of their own, so the
//! control loop waits on one channel for signals and admin requests alike.

use std::io;
use std::sync::mpsc::Sender;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::publish::ControlEvent;

/// Installs the handlers now (so a signal during start-up is not lost to the default action)
/// and forwards each signal as it arrives.
pub fn forward(events: Sender<ControlEvent>) -> io::Result<()> {
    let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT])?;
    std::thread::Builder::new().name("strait-signals".into()).spawn(move || {
        for signal in signals.forever() {
            let event = match signal {
                SIGHUP => ControlEvent::Reload(None),
                SIGTERM => ControlEvent::Shutdown("SIGTERM"),
                _ => ControlEvent::Shutdown("SIGINT"),
            };
            if events.send(event).is_err() {
                return;
            }
        }
    })?;
    Ok(())
}
