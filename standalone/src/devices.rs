//! `demix devices`: lists the audio hosts (ALSA, JACK), their devices and the configurations
//! each supports. Works without any sound card or server: it then says what it did not find.
//! Also home of the host selection shared with `demix live`.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use cpal::traits::{DeviceTrait, HostTrait};
use cpal::{SupportedBufferSize, SupportedStreamConfigRange};

/// Arguments of `demix devices`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this audio host.
    #[arg(long, value_enum)]
    host: Option<HostChoice>,
}

/// An audio host demix can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HostChoice {
    /// ALSA (the Linux default).
    Alsa,
    /// A running JACK server.
    Jack,
}

impl HostChoice {
    fn id(self) -> cpal::HostId {
        match self {
            HostChoice::Alsa => cpal::HostId::Alsa,
            HostChoice::Jack => cpal::HostId::Jack,
        }
    }
}

/// Opens `choice` (default: the platform's default host). For JACK, first checks that a server
/// is running, so the error says so instead of the backend printing connection failures.
/// Not real-time safe.
pub fn open_host(choice: Option<HostChoice>) -> Result<cpal::Host> {
    let Some(choice) = choice else {
        return Ok(cpal::default_host());
    };
    let id = choice.id();
    if !cpal::available_hosts().contains(&id) {
        bail!(
            "the {} audio host is not available on this system",
            id.name()
        );
    }
    if id == cpal::HostId::Jack {
        jack_server_running()?;
    }
    cpal::host_from_id(id).map_err(|e| anyhow!("cannot open the {} audio host: {e}", id.name()))
}

/// Succeeds when a JACK server answers (the one named by $JACK_DEFAULT_SERVER, if set).
fn jack_server_running() -> Result<()> {
    match jack::Client::new("demix_probe", jack::ClientOptions::NO_START_SERVER) {
        Ok(_) => Ok(()),
        Err(e) => {
            let server = std::env::var("JACK_DEFAULT_SERVER").unwrap_or_else(|_| "default".into());
            bail!(
                "no JACK server is running (server `{server}`: {e}); start one, e.g. `jackd -d alsa` or qjackctl"
            )
        }
    }
}

/// Runs `demix devices`.
pub fn run(args: Args) -> Result<()> {
    let hosts: Vec<cpal::HostId> = match args.host {
        Some(choice) => vec![choice.id()],
        None => cpal::available_hosts(),
    };
    let mut found_devices = 0;
    for id in &hosts {
        println!("{}:", id.name());
        let choice = match id {
            cpal::HostId::Jack => HostChoice::Jack,
            _ => HostChoice::Alsa,
        };
        let host = match open_host(Some(choice)) {
            Ok(host) => host,
            Err(e) => {
                println!("  unavailable: {e}");
                continue;
            }
        };
        found_devices += list_host(&host);
    }
    let summary = match found_devices {
        0 => "no audio devices found (no sound card, no running JACK server?)".to_string(),
        1 => "1 device found".to_string(),
        n => format!("{n} devices found"),
    };
    println!("{summary} on {} host(s)", hosts.len());
    Ok(())
}

/// Prints one host's devices; returns how many there are.
fn list_host(host: &cpal::Host) -> usize {
    let default_in = host.default_input_device().and_then(|d| d.name().ok());
    let default_out = host.default_output_device().and_then(|d| d.name().ok());
    let devices: Vec<cpal::Device> = match host.devices() {
        Ok(devices) => devices.collect(),
        Err(e) => {
            println!("  cannot list devices: {e}");
            return 0;
        }
    };
    if devices.is_empty() {
        println!("  no devices");
    }
    for device in &devices {
        let name = device
            .name()
            .unwrap_or_else(|e| format!("<unnamed device: {e}>"));
        let mut marks = Vec::new();
        if default_in.as_deref() == Some(name.as_str()) {
            marks.push("default input");
        }
        if default_out.as_deref() == Some(name.as_str()) {
            marks.push("default output");
        }
        if marks.is_empty() {
            println!("  {name}");
        } else {
            println!("  {name} ({})", marks.join(", "));
        }
        let inputs = device
            .supported_input_configs()
            .map(|c| c.collect::<Vec<_>>());
        let outputs = device
            .supported_output_configs()
            .map(|c| c.collect::<Vec<_>>());
        print_configs("input ", inputs);
        print_configs("output", outputs);
    }
    devices.len()
}

fn print_configs<E: std::fmt::Display>(
    direction: &str,
    configs: Result<Vec<SupportedStreamConfigRange>, E>,
) {
    match configs {
        Ok(configs) if configs.is_empty() => {}
        Ok(configs) => {
            for line in summarise(&configs) {
                println!("    {direction}  {line}");
            }
        }
        Err(e) => println!("    {direction}  cannot query configurations: {e}"),
    }
}

/// One line per sample format, rate range and buffer range, listing the channel counts.
fn summarise(configs: &[SupportedStreamConfigRange]) -> Vec<String> {
    let mut groups: BTreeMap<(String, u32, u32, String), Vec<u16>> = BTreeMap::new();
    for config in configs {
        let key = (
            config.sample_format().to_string(),
            config.min_sample_rate().0,
            config.max_sample_rate().0,
            buffer_text(config.buffer_size()),
        );
        groups.entry(key).or_default().push(config.channels());
    }
    groups
        .into_iter()
        .map(|((format, min, max, buffer), mut channels)| {
            channels.sort_unstable();
            channels.dedup();
            let channels: Vec<String> = channels.iter().map(u16::to_string).collect();
            let rates = if min == max {
                format!("{min} Hz")
            } else {
                format!("{min}-{max} Hz")
            };
            format!(
                "{format}, {rates}, {} channel(s), {buffer}",
                channels.join("/")
            )
        })
        .collect()
}

fn buffer_text(size: &SupportedBufferSize) -> String {
    match size {
        SupportedBufferSize::Range { min, max } if min == max => format!("buffer {min} frames"),
        SupportedBufferSize::Range { min, max } => format!("buffer {min}-{max} frames"),
        SupportedBufferSize::Unknown => "buffer size unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpal::{SampleFormat, SampleRate};

    #[test]
    fn configurations_are_grouped_by_format_rate_and_buffer() {
        let range = |channels, format, min, max| {
            SupportedStreamConfigRange::new(
                channels,
                SampleRate(min),
                SampleRate(max),
                SupportedBufferSize::Range { min: 64, max: 64 },
                format,
            )
        };
        let lines = summarise(&[
            range(2, SampleFormat::F32, 48_000, 48_000),
            range(1, SampleFormat::F32, 48_000, 48_000),
            range(2, SampleFormat::I16, 8_000, 96_000),
        ]);
        assert_eq!(
            lines,
            [
                "f32, 48000 Hz, 1/2 channel(s), buffer 64 frames",
                "i16, 8000-96000 Hz, 2 channel(s), buffer 64 frames",
            ]
        );
    }
}
