//! [`OnnxModel`]: a manifest-described ONNX graph driven frame by frame through ONNX Runtime,
//! as a [`SeparationModel`]. It runs on the engine's inference worker thread, never on the
//! audio thread: it allocates per call and takes as long as the graph takes.

use std::borrow::Cow;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use demix_dsp::{ModelError, ModelSpec, ResultSink, SeparationModel};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{TensorRef, ValueType};

use crate::manifest::{InputKind, Manifest, ManifestError, OutputKind, StreamingStyle};
use crate::runtime::panic_text;

/// Name, element type and shape of one graph input or output, as ONNX Runtime reports them
/// (dynamic dimensions are `-1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Element type (`f32`, `i64`, …), or the kind of a non-tensor value.
    pub element_type: String,
    /// Dimensions; `-1` for a dynamic one. Empty for non-tensor values.
    pub shape: Vec<i64>,
}

impl TensorInfo {
    fn from_ort(name: &str, ty: &ValueType) -> Self {
        match ty {
            ValueType::Tensor { ty, shape, .. } => Self {
                name: name.to_string(),
                element_type: ty.to_string(),
                shape: shape.to_vec(),
            },
            other => Self {
                name: name.to_string(),
                element_type: format!("{other:?}"),
                shape: Vec::new(),
            },
        }
    }

    /// Element type and shape, e.g. `f32 [1, 2, 1025, ?]`.
    pub fn type_text(&self) -> String {
        format!("{} {}", self.element_type, shape_text(&self.shape))
    }
}

impl fmt::Display for TensorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.type_text())
    }
}

/// A shape as text, `?` for dynamic dimensions: `[1, 2, ?, 1]`.
pub fn shape_text(shape: &[i64]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|&d| {
            if d < 0 {
                "?".to_string()
            } else {
                d.to_string()
            }
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// The graph's inputs and outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphInfo {
    /// Graph inputs, in graph order.
    pub inputs: Vec<TensorInfo>,
    /// Graph outputs, in graph order.
    pub outputs: Vec<TensorInfo>,
}

impl GraphInfo {
    /// Reads a session's input and output metadata.
    pub fn of(session: &Session) -> Self {
        Self {
            inputs: session
                .inputs
                .iter()
                .map(|i| TensorInfo::from_ort(&i.name, &i.input_type))
                .collect(),
            outputs: session
                .outputs
                .iter()
                .map(|o| TensorInfo::from_ort(&o.name, &o.output_type))
                .collect(),
        }
    }
}

/// A graph tensor that does not match the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphMismatch {
    /// The tensor's name.
    pub tensor: String,
    /// What the manifest implies.
    pub expected: String,
    /// What the graph has.
    pub actual: String,
}

/// Why an [`OnnxModel`] could not be built around a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// The manifest breaks a rule.
    Manifest(ManifestError),
    /// The graph does not match the manifest.
    Graph(GraphMismatch),
}

/// Where a session's graph comes from.
pub enum GraphSource<'a> {
    /// Model bytes in memory (the embedded default model).
    Memory(&'a [u8]),
    /// A model file (external weight files beside it are found relative to it).
    File(&'a Path),
}

/// Creates an ONNX Runtime session with Demix's options: `intra_op_threads` threads inside
/// operators (at least one, not spinning), one between operators, all graph optimisations.
/// The runtime must have been initialised. Never panics; the error is ONNX Runtime's message.
pub fn build_session(source: GraphSource<'_>, intra_op_threads: usize) -> Result<Session, String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| -> ort::Result<Session> {
        let builder = Session::builder()?
            .with_optimization_level(GraphOptimizationLevel::Level3)?
            .with_intra_threads(intra_op_threads.max(1))?
            .with_inter_threads(1)?
            .with_intra_op_spinning(false)?;
        match source {
            GraphSource::Memory(bytes) => builder.commit_from_memory(bytes),
            GraphSource::File(path) => builder.commit_from_file(path),
        }
    }));
    match outcome {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(panic) => Err(format!(
            "ONNX Runtime panicked: {}",
            panic_text(panic.as_ref())
        )),
    }
}

/// The expected shapes of every tensor the model exchanges, derived from the manifest and
/// checked against the graph.
#[derive(Debug, Clone, PartialEq)]
struct Layout {
    input_kind: InputKind,
    output_kind: OutputKind,
    channels: usize,
    bins: usize,
    sources: usize,
    /// `T`: frames per call.
    frames: usize,
    input_shape: Vec<i64>,
    output_shape: Vec<i64>,
    /// Complex outputs: the source index of each source slot of the tensor.
    estimated: Vec<usize>,
    scale: f32,
    fallback: usize,
}

impl Layout {
    fn new(manifest: &Manifest) -> Self {
        let channels = manifest.channels;
        let bins = manifest.bins();
        let frames = manifest.context_frames();
        let planes = match manifest.input.kind {
            InputKind::Magnitude => channels,
            InputKind::Complex => 2 * channels,
        };
        let estimated = manifest.estimated_sources();
        let output_shape = match manifest.output.kind {
            OutputKind::Mask | OutputKind::Magnitude => {
                vec![1, manifest.sources.len(), channels, bins, frames]
            }
            OutputKind::Complex => vec![1, estimated.len(), 2 * channels, bins, frames],
        };
        Self {
            input_kind: manifest.input.kind,
            output_kind: manifest.output.kind,
            channels,
            bins,
            sources: manifest.sources.len(),
            frames,
            input_shape: to_i64(&[1, planes, bins, frames]),
            output_shape: to_i64(&output_shape),
            estimated,
            scale: manifest.output_scale(),
            fallback: manifest.fallback_index(),
        }
    }

    /// Writes one frame's features (`[channel][bin]` or `[channel][bin][re, im]`) into column
    /// `t` of the model input `[1, planes, F, T]`.
    fn scatter(&self, features: &[f32], t: usize, input: &mut [f32]) {
        let frames = self.frames;
        match self.input_kind {
            InputKind::Magnitude => {
                for (i, &v) in features.iter().enumerate() {
                    input[i * frames + t] = v;
                }
            }
            InputKind::Complex => {
                let bins = self.bins;
                for (i, pair) in features.chunks_exact(2).enumerate() {
                    let (c, f) = (i / bins, i % bins);
                    for (k, &v) in pair.iter().enumerate() {
                        input[((2 * c + k) * bins + f) * frames + t] = v;
                    }
                }
            }
        }
    }

    /// Turns column `t` of the model output into one frame's result for the engine: masks
    /// `[source][channel][bin]`, or spectra `[source][channel][bin][re, im]` with the residual
    /// source left at zero.
    fn gather(&self, output: &[f32], t: usize, result: &mut [f32]) {
        let frames = self.frames;
        match self.output_kind {
            OutputKind::Mask => {
                for (i, r) in result.iter_mut().enumerate() {
                    *r = output[i * frames + t];
                }
            }
            OutputKind::Magnitude => {
                for (i, r) in result.iter_mut().enumerate() {
                    *r = output[i * frames + t];
                }
                self.ratio_masks(result);
            }
            OutputKind::Complex => {
                result.fill(0.0);
                let (channels, bins) = (self.channels, self.bins);
                let planes = 2 * channels;
                for (slot, &source) in self.estimated.iter().enumerate() {
                    for p in 0..planes {
                        let (c, k) = (p / 2, p % 2);
                        for f in 0..bins {
                            let v = output[((slot * planes + p) * bins + f) * frames + t];
                            result[((source * channels + c) * bins + f) * 2 + k] = v * self.scale;
                        }
                    }
                }
            }
        }
    }

    /// Replaces magnitude estimates `[source][channel][bin]` by ratio masks `est_s / Σ est`
    /// (negative estimates count as 0). A bin where every estimate is 0 goes to the fallback
    /// source; a bin with a non-finite estimate becomes NaN so the engine discards the frame.
    fn ratio_masks(&self, values: &mut [f32]) {
        let lanes = self.channels * self.bins;
        for i in 0..lanes {
            let lane = |s: usize| s * lanes + i;
            if (0..self.sources).any(|s| !values[lane(s)].is_finite()) {
                for s in 0..self.sources {
                    values[lane(s)] = f32::NAN;
                }
                continue;
            }
            let sum: f32 = (0..self.sources).map(|s| values[lane(s)].max(0.0)).sum();
            for s in 0..self.sources {
                values[lane(s)] = if sum > f32::MIN_POSITIVE {
                    values[lane(s)].max(0.0) / sum
                } else if s == self.fallback {
                    1.0
                } else {
                    0.0
                };
            }
        }
    }
}

fn to_i64(dims: &[usize]) -> Vec<i64> {
    dims.iter().map(|&d| d as i64).collect()
}

/// Whether a graph shape admits `expected` (same rank; `-1` matches any size).
fn shape_admits(graph: &[i64], expected: &[i64]) -> bool {
    graph.len() == expected.len() && graph.iter().zip(expected).all(|(&g, &e)| g < 0 || g == e)
}

/// One recurrent state tensor and its current value.
#[derive(Debug, Clone)]
struct State {
    input: String,
    output: String,
    shape: Vec<i64>,
    value: Vec<f32>,
}

/// How frames are batched into calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schedule {
    /// One frame per call; the output of call `m` belongs to frame `m − lookahead`.
    Stateful { lookahead: usize },
    /// Every `step` pushes, one call on the last `context` frames whose columns
    /// `context − lookahead − step ..` hold the results of the last `step` finished frames.
    Windowed {
        context: usize,
        step: usize,
        lookahead: usize,
    },
}

/// Checks the graph against the manifest; the first mismatch names the tensor, the expected
/// and the actual shape. Complex outputs may drop the source axis when there is one source.
fn check_graph(manifest: &Manifest, graph: &GraphInfo) -> Result<Layout, GraphMismatch> {
    let mut layout = Layout::new(manifest);
    let mut declared_inputs = vec![(manifest.input.name.clone(), layout.input_shape.clone())];
    let mut declared_outputs = vec![(manifest.output.name.clone(), layout.output_shape.clone())];
    for state in &manifest.streaming.state {
        let shape = to_i64(&state.shape);
        declared_inputs.push((state.input.clone(), shape.clone()));
        declared_outputs.push((state.output.clone(), shape));
    }
    let expected_text = |shape: &[i64]| format!("f32 {}", shape_text(shape));
    let names = |list: &[TensorInfo]| {
        list.iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for input in &graph.inputs {
        if !declared_inputs.iter().any(|(name, _)| *name == input.name) {
            let declared: Vec<&str> = declared_inputs.iter().map(|(n, _)| n.as_str()).collect();
            return Err(GraphMismatch {
                tensor: input.name.clone(),
                expected: format!(
                    "no such input (the manifest declares inputs {})",
                    declared.join(", ")
                ),
                actual: format!("graph input {}", input.type_text()),
            });
        }
    }
    for (role, declared, actual) in [
        ("input", &declared_inputs, &graph.inputs),
        ("output", &declared_outputs, &graph.outputs),
    ] {
        for (index, (name, shape)) in declared.iter().enumerate() {
            let Some(tensor) = actual.iter().find(|t| t.name == *name) else {
                return Err(GraphMismatch {
                    tensor: name.clone(),
                    expected: format!("graph {role} {}", expected_text(shape)),
                    actual: format!("no such {role} (the graph's {role}s are {})", names(actual)),
                });
            };
            let mut shape = shape.clone();
            let is_main_output = role == "output" && index == 0;
            if is_main_output
                && layout.output_kind == OutputKind::Complex
                && layout.estimated.len() == 1
                && tensor.shape.len() == 4
            {
                shape.remove(1);
                layout.output_shape = shape.clone();
            }
            if tensor.element_type != "f32" || !shape_admits(&tensor.shape, &shape) {
                return Err(GraphMismatch {
                    tensor: name.clone(),
                    expected: expected_text(&shape),
                    actual: tensor.type_text(),
                });
            }
        }
    }
    Ok(layout)
}

/// A separation model running an ONNX graph described by a [`Manifest`]. Build it with
/// [`OnnxModel::new`]; it then runs on the inference worker thread (not real-time safe).
pub struct OnnxModel {
    spec: ModelSpec,
    session: Session,
    input_name: String,
    output_name: String,
    layout: Layout,
    schedule: Schedule,
    /// Frames pushed since the start or the last reset.
    pushed: usize,
    /// Stateful models: the recurrent state tensors.
    states: Vec<State>,
    /// Windowed models: a ring of the last `context` frames' features, zero before frame 0.
    history: Vec<f32>,
    /// The model input, `[1, planes, F, T]`.
    input: Vec<f32>,
    /// The last model output.
    output: Vec<f32>,
    /// One frame's result.
    result: Vec<f32>,
}

impl OnnxModel {
    /// Wraps `session` after validating `manifest` and checking the graph against it.
    pub fn new(session: Session, manifest: &Manifest) -> Result<Self, BuildError> {
        let spec = manifest.model_spec().map_err(BuildError::Manifest)?;
        let layout = check_graph(manifest, &GraphInfo::of(&session)).map_err(BuildError::Graph)?;
        let streaming = &manifest.streaming;
        let (schedule, history_frames) = match streaming.style {
            StreamingStyle::Stateful => (
                Schedule::Stateful {
                    lookahead: streaming.lookahead_frames,
                },
                0,
            ),
            StreamingStyle::Windowed => (
                Schedule::Windowed {
                    context: manifest.context_frames(),
                    step: manifest.step_frames(),
                    lookahead: streaming.lookahead_frames,
                },
                manifest.context_frames(),
            ),
        };
        let states = streaming
            .state
            .iter()
            .map(|s| State {
                input: s.input.clone(),
                output: s.output.clone(),
                shape: to_i64(&s.shape),
                value: vec![0.0; s.shape.iter().product()],
            })
            .collect();
        let input_len = layout.input_shape.iter().product::<i64>() as usize;
        let output_len = layout.output_shape.iter().product::<i64>() as usize;
        Ok(Self {
            input: vec![0.0; input_len],
            output: vec![0.0; output_len],
            result: vec![0.0; spec.result_len()],
            history: vec![0.0; history_frames * spec.feature_len()],
            input_name: manifest.input.name.clone(),
            output_name: manifest.output.name.clone(),
            spec,
            session,
            layout,
            schedule,
            pushed: 0,
            states,
        })
    }

    /// Runs the graph on `self.input` and the states, copies the output into `self.output`
    /// and the new states into place.
    fn run(&mut self) -> Result<(), ModelError> {
        let failed = |what: &str, e: ort::Error| ModelError(format!("{what}: {e}"));
        let mut values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::new();
        let tensor = TensorRef::from_array_view((self.layout.input_shape.clone(), &self.input[..]))
            .map_err(|e| failed("preparing the input tensor", e))?;
        values.push((Cow::Borrowed(self.input_name.as_str()), tensor.into()));
        for state in &self.states {
            let tensor = TensorRef::from_array_view((state.shape.clone(), &state.value[..]))
                .map_err(|e| failed("preparing a state tensor", e))?;
            values.push((Cow::Borrowed(state.input.as_str()), tensor.into()));
        }
        let outputs = self
            .session
            .run(values)
            .map_err(|e| failed("ONNX Runtime inference failed", e))?;
        let fetch = |name: &str, shape: &[i64]| -> Result<&[f32], ModelError> {
            let value = outputs
                .get(name)
                .ok_or_else(|| ModelError(format!("the graph returned no output `{name}`")))?;
            let (actual, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| failed(&format!("reading output `{name}`"), e))?;
            if **actual != *shape {
                return Err(ModelError(format!(
                    "output `{name}` has shape {}, expected {}",
                    shape_text(actual),
                    shape_text(shape)
                )));
            }
            Ok(data)
        };
        self.output
            .copy_from_slice(fetch(&self.output_name, &self.layout.output_shape)?);
        for state in &mut self.states {
            state
                .value
                .copy_from_slice(fetch(&state.output, &state.shape)?);
        }
        Ok(())
    }

    /// Hands column `t` of the last output to `sink` as one frame's result.
    fn emit(&mut self, t: usize, sink: &mut dyn ResultSink) {
        self.layout.gather(&self.output, t, &mut self.result);
        sink.emit(&self.result);
    }
}

impl SeparationModel for OnnxModel {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn push_frame(
        &mut self,
        features: &[f32],
        sink: &mut dyn ResultSink,
    ) -> Result<(), ModelError> {
        let feature_len = self.spec.feature_len();
        if features.len() != feature_len {
            return Err(ModelError(format!(
                "expected {feature_len} feature values, got {}",
                features.len()
            )));
        }
        self.pushed += 1;
        match self.schedule {
            Schedule::Stateful { lookahead } => {
                self.layout.scatter(features, 0, &mut self.input);
                self.run()?;
                // The first `lookahead` outputs belong to frames before frame 0.
                if self.pushed > lookahead {
                    self.emit(0, sink);
                }
            }
            Schedule::Windowed {
                context,
                step,
                lookahead,
            } => {
                let slot = (self.pushed - 1) % context;
                self.history[slot * feature_len..(slot + 1) * feature_len]
                    .copy_from_slice(features);
                if !self.pushed.is_multiple_of(step) {
                    return Ok(());
                }
                // Column t holds frame pushed − context + t, kept in slot
                // (pushed + t) % context; the slots of frames before 0 are still zero.
                for t in 0..context {
                    let slot = (self.pushed + t) % context;
                    let frame = &self.history[slot * feature_len..(slot + 1) * feature_len];
                    self.layout.scatter(frame, t, &mut self.input);
                }
                self.run()?;
                // Column context − lookahead − step + j holds frame
                // pushed − lookahead − step + j; frames before 0 are dropped.
                for j in 0..step {
                    if self.pushed + j >= lookahead + step {
                        self.emit(context - lookahead - step + j, sink);
                    }
                }
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.pushed = 0;
        self.history.fill(0.0);
        for state in &mut self.states {
            state.value.fill(0.0);
        }
    }
}

#[cfg(test)]
#[path = "onnx_tests.rs"]
mod tests;
