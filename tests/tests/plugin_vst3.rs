//! End-to-end: the bundled `target/bundled/Demix.vst3` loaded the way a VST3 host's scanner does
//! it (the module's `ModuleEntry` and `GetPluginFactory`, then the `vst3` crate's host-side COM
//! interfaces): the factory lists Demix, the component instantiates, exposes one stereo input
//! bus and five stereo output buses (main plus one per stem), and reports the engine's exact
//! latency once set up for 48 kHz. Needs the bundle: `cargo xtask bundle demix-plugin --release`
//! (run by `cargo xtask test`).

mod cli_common;

use std::ffi::c_void;
use std::path::PathBuf;
use std::ptr::null_mut;

use demix_dsp::{DeadlinePolicy, EngineConfig, Separator};
use demix_models::{LoadOptions, ModelChoice};
use vst3::Steinberg::Vst::{
    BusDirections_, BusInfo, IAudioProcessor, IAudioProcessorTrait, IComponent, IComponentTrait,
    MediaTypes_, ProcessModes_, ProcessSetup, SymbolicSampleSizes_,
};
use vst3::Steinberg::{
    kResultOk, IPluginBaseTrait, IPluginFactory, IPluginFactoryTrait, PClassInfo,
};
use vst3::{ComPtr, Interface};

const RATE: u32 = 48_000;
/// The largest block the test announces to the plugin.
const MAX_BLOCK: usize = 128;
/// The compute slack of the plugin's default latency preset ("Normal").
const DEFAULT_SLACK_HOPS: usize = 2;

/// `<target>/bundled/Demix.vst3/Contents/<arch>-linux/Demix.so`, found from this test
/// executable (`<target>/<profile>/deps/…`).
fn module_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(3)
        .expect("test executable lives in <target>/<profile>/deps")
        .join("bundled/Demix.vst3/Contents")
        .join(format!("{}-linux", std::env::consts::ARCH))
        .join("Demix.so")
}

fn c_text(raw: &[i8]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn the_vst3_instantiates_with_its_buses_and_exact_latency() {
    let path = module_path();
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask bundle demix-plugin --release` first",
        path.display()
    );
    let loaded = demix_models::load(&ModelChoice::EmbeddedDefault, &LoadOptions::default())
        .expect("default model loads");
    let config = EngineConfig {
        compute_slack_hops: DEFAULT_SLACK_HOPS,
        deadline: DeadlinePolicy::RealTime,
    };
    let expected_latency = Separator::with_max_block(loaded.model, config, RATE, 2, MAX_BLOCK)
        .expect("separator builds")
        .latency();

    // SAFETY: the module is the VST3 plugin this workspace builds; its entry points have the
    // signatures the VST3 SDK defines for Linux.
    unsafe {
        let library = libloading::Library::new(&path).expect("the module loads");
        let module_entry: libloading::Symbol<unsafe extern "C" fn(*mut c_void) -> bool> =
            library.get(b"ModuleEntry").expect("ModuleEntry");
        let module_exit: libloading::Symbol<unsafe extern "C" fn() -> bool> =
            library.get(b"ModuleExit").expect("ModuleExit");
        let get_factory: libloading::Symbol<unsafe extern "system" fn() -> *mut c_void> =
            library.get(b"GetPluginFactory").expect("GetPluginFactory");
        assert!(module_entry(null_mut()));
        {
            let factory = ComPtr::<IPluginFactory>::from_raw(get_factory() as *mut IPluginFactory)
                .expect("a plugin factory");
            let classes = factory.countClasses();
            let mut audio_class = None;
            for index in 0..classes {
                let mut info: PClassInfo = std::mem::zeroed();
                assert_eq!(factory.getClassInfo(index, &mut info), kResultOk);
                if c_text(&info.category) == "Audio Module Class" {
                    assert_eq!(c_text(&info.name), "Demix");
                    audio_class = Some(info.cid);
                }
            }
            let cid = audio_class.expect("an audio module class");

            let mut object: *mut c_void = null_mut();
            let iid = IComponent::IID;
            assert_eq!(
                factory.createInstance(cid.as_ptr(), iid.as_ptr() as *const _, &mut object),
                kResultOk
            );
            let component =
                ComPtr::<IComponent>::from_raw(object as *mut IComponent).expect("a component");
            assert_eq!(component.initialize(null_mut()), kResultOk);
            let (audio, input, output) = (
                MediaTypes_::kAudio as i32,
                BusDirections_::kInput as i32,
                BusDirections_::kOutput as i32,
            );
            assert_eq!(component.getBusCount(audio, input), 1);
            assert_eq!(component.getBusCount(audio, output), 5);
            let mut names = Vec::new();
            for index in 0..5 {
                let mut bus: BusInfo = std::mem::zeroed();
                assert_eq!(
                    component.getBusInfo(audio, output, index, &mut bus),
                    kResultOk
                );
                assert_eq!(bus.channelCount, 2, "output bus {index} is stereo");
                let name: String = char::decode_utf16(bus.name.iter().copied())
                    .map(|c| c.unwrap_or('?'))
                    .take_while(|&c| c != '\0')
                    .collect();
                names.push(name);
            }
            assert_eq!(names[1..], ["Vocals", "Drums", "Bass", "Other"]);

            let processor = component
                .cast::<IAudioProcessor>()
                .expect("the component is an audio processor");
            let mut setup = ProcessSetup {
                processMode: ProcessModes_::kRealtime as i32,
                symbolicSampleSize: SymbolicSampleSizes_::kSample32 as i32,
                maxSamplesPerBlock: MAX_BLOCK as i32,
                sampleRate: f64::from(RATE),
            };
            assert_eq!(processor.setupProcessing(&mut setup), kResultOk);
            assert_eq!(component.setActive(1), kResultOk);
            assert_eq!(processor.getLatencySamples() as usize, expected_latency);
            assert_eq!(component.setActive(0), kResultOk);
            assert_eq!(component.terminate(), kResultOk);
        }
        assert!(module_exit());
    }
}
