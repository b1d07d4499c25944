//! Feeds arbitrary bytes to symphonia exactly as `standalone/src/audio_in.rs` does (probe with
//! gapless enabled, first non-null track, default decoder, packet loop, conversion to planar
//! `f32`): any input must end in `Ok` or an error, never a hang, an abort or unbounded memory.
//!
//! Symphonia itself panics on some malformed files (this target found a `step_by(0)` panic in
//! the ADTS/AAC reader's probe; regression test `crafted_adts_file_is_refused_without_a_panic`
//! in tests/tests/faults.rs), so the harness models the decoder as it has to be used: every
//! symphonia call runs under `catch_unwind` and a panic counts as "not decodable". What the
//! harness still catches is everything `catch_unwind` cannot turn into an error: aborts, stack
//! overflows, hangs, runaway allocations, and panics in the conversion code after decoding.
#![no_main]

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use libfuzzer_sys::fuzz_target;
use symphonia::core::audio::{AudioBuffer, Signal};
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Extension hints the CLI passes for the file names users give it; the first input byte picks
/// one (or none), so hint-driven probe paths are covered too.
const HINTS: [&str; 8] = ["wav", "flac", "mp3", "ogg", "m4a", "aiff", "caf", "mkv"];

/// Decoded frames after which one input stops (a tiny file may declare hours of audio).
const MAX_FRAMES: u64 = 1 << 22;

/// Runs one symphonia call; a panic inside it becomes `None`, like an error.
fn guarded<T>(call: impl FnOnce() -> T) -> Option<T> {
    catch_unwind(AssertUnwindSafe(call)).ok()
}

fuzz_target!(init: {
    // libFuzzer's hook aborts on every panic, even a caught one; the default hook only prints,
    // and a panic outside `guarded` still reaches libFuzzer's own `catch_unwind` and aborts.
    drop(std::panic::take_hook());
}, |data: &[u8]| {
    let Some((&hint_byte, bytes)) = data.split_first() else {
        return;
    };
    let mut hint = Hint::new();
    if let Some(ext) = HINTS.get(usize::from(hint_byte) % (HINTS.len() + 1)) {
        hint.with_extension(ext);
    }
    let stream = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let format_options = FormatOptions {
        enable_gapless: true,
        ..Default::default()
    };
    let Some(Ok(probed)) = guarded(|| {
        symphonia::default::get_probe().format(
            &hint,
            stream,
            &format_options,
            &MetadataOptions::default(),
        )
    }) else {
        return;
    };
    let mut format = probed.format;
    let Some(track) = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
    else {
        return;
    };
    let params = track.codec_params.clone();
    let track_id = track.id;
    let Some(Ok(mut decoder)) =
        guarded(|| symphonia::default::get_codecs().make(&params, &DecoderOptions::default()))
    else {
        return;
    };
    let mut converted: Option<AudioBuffer<f32>> = None;
    let mut decoded_frames = 0u64;
    while decoded_frames < MAX_FRAMES {
        // The CLI tells end of file from damage here; both end the stream.
        let Some(Ok(packet)) = guarded(|| format.next_packet()) else {
            break;
        };
        if packet.track_id() != track_id {
            continue;
        }
        if packet.buf().is_empty() {
            break;
        }
        let Some(Ok(decoded)) = guarded(|| decoder.decode(&packet)) else {
            break;
        };
        let spec = *decoded.spec();
        let frames = decoded.frames();
        if frames == 0 {
            continue;
        }
        let buf = match &mut converted {
            Some(buf) if buf.capacity() >= frames && *buf.spec() == spec => buf,
            slot => slot.insert(AudioBuffer::new(
                decoded.capacity().max(frames) as u64,
                spec,
            )),
        };
        decoded.convert(buf);
        for ch in 0..spec.channels.count() {
            assert_eq!(buf.chan(ch).len(), frames);
        }
        decoded_frames += frames as u64;
    }
});
