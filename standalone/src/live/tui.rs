//! The terminal display of `demix live` (ratatui): a meter, gain, mute and solo per stem, the
//! current latency and the xrun and deadline-miss counters, with keys to change the mix while
//! the audio runs. Runs on the main thread; it only talks to the audio thread through atomics.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Result;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Gauge, Paragraph};
use ratatui::Frame;

use super::mixer::{Mixer, Preset};
use super::{db_text, Ending, Session, Status};

/// Lowest level a meter shows, in dBFS.
const METER_FLOOR_DB: f32 = -60.0;
/// How often the display refreshes.
const FRAME: Duration = Duration::from_millis(80);
/// Help line.
const KEYS: &str =
    "↑/↓ stem  ←/→ gain ∓1 dB  0 gain 0 dB  m mute  s solo  i isolate  r remove  a all  q quit";

/// Whether a terminal display can run (stdout and stdin are terminals).
pub fn available() -> bool {
    std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}

/// Shows the display until the session ends or the user quits; restores the terminal after.
pub fn run(header: &str, session: &mut Session, mixer: &mut Mixer) -> Result<Ending> {
    let mut terminal = ratatui::try_init()?;
    let result = event_loop(&mut terminal, header, session, mixer);
    ratatui::restore();
    result
}

struct View {
    selected: usize,
    meters: Vec<f32>,
    messages: Vec<String>,
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    header: &str,
    session: &mut Session,
    mixer: &mut Mixer,
) -> Result<Ending> {
    let mut view = View {
        selected: 0,
        meters: vec![0.0; mixer.names().len()],
        messages: Vec::new(),
    };
    loop {
        if let Some(ending) = session.check() {
            return Ok(ending);
        }
        view.messages.extend(session.messages());
        let excess = view.messages.len().saturating_sub(3);
        view.messages.drain(..excess);
        let status = session.status();
        for (meter, &peak) in view.meters.iter_mut().zip(&status.stem_peaks) {
            *meter = peak.max(*meter * 0.7);
        }
        terminal.draw(|frame| draw(frame, header, &status, mixer, &view))?;
        if !event::poll(FRAME)? {
            continue;
        }
        let Event::Key(key) = event::read()? else {
            continue;
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        let stems = mixer.names().len();
        let selected = view.selected;
        match key.code {
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                return Ok(Ending::User)
            }
            KeyCode::Char('q') | KeyCode::Esc => return Ok(Ending::User),
            KeyCode::Up | KeyCode::Char('k') => view.selected = (selected + stems - 1) % stems,
            KeyCode::Down | KeyCode::Char('j') => view.selected = (selected + 1) % stems,
            KeyCode::Left | KeyCode::Char('h') => mixer.nudge(selected, -1.0),
            KeyCode::Right | KeyCode::Char('l') => mixer.nudge(selected, 1.0),
            KeyCode::Char('0') => mixer.reset_gain(selected),
            KeyCode::Char('m') => mixer.toggle_mute(selected),
            KeyCode::Char('s') => mixer.toggle_solo(selected),
            KeyCode::Char(key @ ('i' | 'r' | 'a')) => {
                let name = mixer.names()[selected].clone();
                let preset = match key {
                    'i' => Preset::Isolate(name),
                    'r' => Preset::Remove(name),
                    _ => Preset::All,
                };
                mixer.apply_preset(&preset)?;
            }
            _ => continue,
        }
        mixer.publish(session.shared());
    }
}

fn draw(frame: &mut Frame, header: &str, status: &Status, mixer: &Mixer, view: &View) {
    let stems = mixer.names().len() as u16;
    let [top, counters, meters, messages, help] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(3),
        Constraint::Length(stems + 2),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(
        Paragraph::new(header.to_string()).block(Block::bordered().title(" demix live ")),
        top,
    );
    let highlight = |count: u64| {
        if count > 0 {
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::default().fg(Color::Green)
        }
    };
    let line = Line::from(vec![
        format!(
            "{:.0} s   latency {:.1} ms   load {:.0}%   xruns ",
            status.seconds,
            status.latency_ms(),
            status.load * 100.0
        )
        .into(),
        ratatui::text::Span::styled(status.own_xruns.to_string(), highlight(status.own_xruns)),
        format!(" (host {})   deadline misses ", status.host_xruns).into(),
        ratatui::text::Span::styled(
            status.deadline_misses.to_string(),
            highlight(status.deadline_misses),
        ),
        format!(
            "   in {}   out {}",
            db_text(status.input_peak),
            db_text(status.output_peak)
        )
        .into(),
    ]);
    frame.render_widget(Paragraph::new(line).block(Block::bordered()), counters);
    let block = Block::bordered().title(" stems ");
    let inner = block.inner(meters);
    frame.render_widget(block, meters);
    let rows = Layout::vertical(vec![Constraint::Length(1); stems as usize]).split(inner);
    for (index, row) in rows.iter().enumerate() {
        let [label, meter] =
            Layout::horizontal([Constraint::Length(34), Constraint::Min(10)]).areas(*row);
        let marker = if index == view.selected { ">" } else { " " };
        let gain = mixer.gain_db(index);
        let gain = if gain.is_finite() {
            format!("{gain:+.0} dB")
        } else {
            "-inf dB".into()
        };
        let flags = format!(
            "{}{}",
            if mixer.is_muted(index) { "M" } else { " " },
            if mixer.is_soloed(index) { "S" } else { " " }
        );
        let style = if mixer.effective_gain(index) == 0.0 {
            Style::default().fg(Color::DarkGray)
        } else {
            Style::default()
        };
        let text = format!("{marker} {:<12} {gain:>8} {flags}", mixer.names()[index]);
        frame.render_widget(Paragraph::new(text).style(style), label);
        let peak = view.meters.get(index).copied().unwrap_or(0.0);
        let level_db = if peak > 0.0 {
            20.0 * peak.log10()
        } else {
            METER_FLOOR_DB
        };
        let ratio = ((level_db - METER_FLOOR_DB) / -METER_FLOOR_DB).clamp(0.0, 1.0);
        let colour = if level_db > -1.0 {
            Color::Red
        } else if level_db > -12.0 {
            Color::Yellow
        } else {
            Color::Green
        };
        frame.render_widget(
            Gauge::default()
                .ratio(f64::from(ratio))
                .label(db_text(peak))
                .gauge_style(Style::default().fg(colour)),
            meter,
        );
    }
    frame.render_widget(Paragraph::new(view.messages.join("\n")), messages);
    frame.render_widget(
        Paragraph::new(KEYS).style(Style::default().fg(Color::DarkGray)),
        help,
    );
}
