//! `report.html`: the report for a browser, self-contained in the report's folder (the page,
//! its PNGs, and the audio it plays, copied under `audio/`), readable offline.
//!
//! The page is the Markdown report rendered, then two listening sections: test queries with
//! the top clips of a Stage-1 and a Stage-2 model side by side, and training captions with the
//! clips the teacher ensemble estimates to match them best. Each player reports whether its
//! audio decoded (`data-state` on the `<audio>` element, `data-audio-ok` / `data-audio-failed`
//! on `<body>`), so that a broken file shows on the page and a browser test can read it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use pipeline_formats::FeatureTables;

pub const HTML_FILE: &str = "report.html";
pub const AUDIO_DIR: &str = "audio";

/// Clips shown per model and query.
pub const SHOWN: usize = 5;

/// A test query of the explorer.
#[derive(Debug, Clone)]
pub struct Query {
    pub caption_index: i64,
    /// Why it is shown: "Stage 2 gained most", "Stage 2 lost most" or "sample".
    pub why: &'static str,
    /// Per model: the annotated clip's rank and the best clips `(clip row, score)`.
    pub columns: Vec<(usize, Vec<(i64, f32)>)>,
}

/// The query explorer: models (name, stage) and queries.
#[derive(Debug, Clone)]
pub struct Explorer {
    pub models: Vec<(String, &'static str)>,
    pub queries: Vec<Query>,
}

/// A training caption and its best clips by the ensemble's estimate `(clip row, estimate,
/// annotated)`.
#[derive(Debug, Clone)]
pub struct Estimated {
    pub caption_index: i64,
    pub clips: Vec<(i64, f32, bool)>,
}

/// Everything the page shows besides the Markdown.
pub struct Page<'a> {
    pub title: &'a str,
    pub markdown: &'a str,
    pub explorer: Option<Explorer>,
    pub estimated: Vec<Estimated>,
    /// Clips and captions (rows of the features).
    pub features: Option<&'a FeatureTables>,
    /// The data set folder the clips' files are relative to (no players without it).
    pub dataset: Option<&'a Path>,
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.4}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left}\
img{max-width:100%}.pair{display:grid;grid-template-columns:1fr 1fr;gap:1em}\
.hit{display:grid;grid-template-columns:2em 4em 1fr;align-items:center;gap:.5em;margin:.2em 0}\
.annotated{background:#fde2e2}.query{border-top:1px solid #ddd;margin-top:1.5em;padding-top:.5em}\
.why{color:#666;font-size:.9em}audio{width:100%;height:2em}audio[data-state=error]{outline:2px solid red}";

/// Marks each player once its audio decoded or failed, and counts them on `<body>`.
const SCRIPT: &str = "const players=[...document.querySelectorAll('audio')];let ok=0,failed=0;\
const done=()=>{document.body.dataset.audioOk=ok;document.body.dataset.audioFailed=failed;};\
for(const a of players){a.addEventListener('loadedmetadata',()=>{a.dataset.state='ok';ok++;done();},{once:true});\
a.addEventListener('error',()=>{a.dataset.state='error';failed++;const m=document.createElement('span');\
m.textContent='audio missing or unreadable';a.after(m);done();},{once:true});a.load();}done();";

/// Writes `report.html` and copies the audio it plays into `out_dir/audio/`.
pub fn write(out_dir: &Path, page: &Page<'_>) -> anyhow::Result<()> {
    let mut audio = AudioCopies::new(out_dir, page.dataset, page.features);
    let mut html = String::new();
    write!(
        html,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(page.title)
    )?;
    let parser =
        pulldown_cmark::Parser::new_ext(page.markdown, pulldown_cmark::Options::ENABLE_TABLES);
    pulldown_cmark::html::push_html(&mut html, parser);
    if let (Some(explorer), Some(features)) = (&page.explorer, page.features) {
        explorer_section(&mut html, explorer, features, &mut audio)?;
    }
    if let (false, Some(features)) = (page.estimated.is_empty(), page.features) {
        estimated_section(&mut html, &page.estimated, features, &mut audio)?;
    }
    if page.dataset.is_none() {
        html.push_str("<p><em>No players: bind the data set as the report's `dataset` input to listen.</em></p>\n");
    }
    write!(html, "<script>{SCRIPT}</script>\n</body>\n</html>\n")?;
    fs_err::write(out_dir.join(HTML_FILE), html)?;
    Ok(())
}

fn explorer_section(
    html: &mut String,
    explorer: &Explorer,
    features: &FeatureTables,
    audio: &mut AudioCopies<'_>,
) -> anyhow::Result<()> {
    let names: Vec<String> = explorer
        .models
        .iter()
        .map(|(name, stage)| format!("<code>{}</code> (Stage {stage})", escape(name)))
        .collect();
    write!(
        html,
        "<h2>Listen: test queries</h2>\n<p>For each caption, the {SHOWN} clips {} rank first, with their cosine \
         scores; the caption's annotated clip is shaded, and its rank under each model is in the heading. The \
         queries where Stage 2 gained and lost the most ranks are first, then a sample.</p>\n",
        names.join(" and ")
    )?;
    for q in &explorer.queries {
        let caption = &features.captions[q.caption_index as usize];
        write!(
            html,
            "<div class=\"query\"><p><strong>\u{201c}{}\u{201d}</strong> <span class=\"why\">{}</span></p>\n<div class=\"pair\">\n",
            escape(&caption.text),
            q.why
        )?;
        for ((name, stage), (rank, top)) in explorer.models.iter().zip(&q.columns) {
            writeln!(
                html,
                "<div><p><code>{}</code> (Stage {stage}): annotated clip at rank {rank}</p>",
                escape(name)
            )?;
            for (position, &(clip, score)) in top.iter().enumerate() {
                hit(
                    html,
                    audio,
                    features,
                    position + 1,
                    clip,
                    &format!("{score:.3}"),
                    clip as usize == caption.clip_index,
                )?;
            }
            html.push_str("</div>\n");
        }
        html.push_str("</div></div>\n");
    }
    Ok(())
}

fn estimated_section(
    html: &mut String,
    estimated: &[Estimated],
    features: &FeatureTables,
    audio: &mut AudioCopies<'_>,
) -> anyhow::Result<()> {
    write!(
        html,
        "<h2>Listen: what the teachers estimate</h2>\n<p>For a few training captions, the {SHOWN} clips with the \
         highest estimated correspondence (the teachers' mean cosine, the target of Stage 2), from the \
         correspondence table; the annotated clip is shaded.</p>\n"
    )?;
    for e in estimated {
        let caption = &features.captions[e.caption_index as usize];
        writeln!(
            html,
            "<div class=\"query\"><p><strong>\u{201c}{}\u{201d}</strong></p>",
            escape(&caption.text)
        )?;
        for (position, &(clip, estimate, annotated)) in e.clips.iter().take(SHOWN).enumerate() {
            hit(
                html,
                audio,
                features,
                position + 1,
                clip,
                &format!("{estimate:.3}"),
                annotated,
            )?;
        }
        html.push_str("</div>\n");
    }
    Ok(())
}

/// One ranked clip: position, score, player (or the clip id alone) and its captions as a tooltip.
fn hit(
    html: &mut String,
    audio: &mut AudioCopies<'_>,
    features: &FeatureTables,
    position: usize,
    clip: i64,
    score: &str,
    annotated: bool,
) -> anyhow::Result<()> {
    let row = &features.clips[clip as usize];
    let captions: Vec<&str> = row
        .caption_indices
        .iter()
        .map(|&j| features.captions[j].text.as_str())
        .collect();
    let player = match audio.copy(clip)? {
        Some(src) => format!(
            "<audio controls preload=\"metadata\" src=\"{}\" aria-label=\"clip {}\"></audio>",
            escape(&src),
            escape(&row.clip_id)
        ),
        None => String::new(),
    };
    writeln!(
        html,
        "<div class=\"hit{}\" title=\"{}\"><span>{position}</span><span>{score}</span><span><code>{}</code>{}{player}</span></div>",
        if annotated { " annotated" } else { "" },
        escape(&captions.join("\n")),
        escape(&row.clip_id),
        if annotated { " (annotated)" } else { "" },
    )?;
    Ok(())
}

/// Copies each clip's audio once into `audio/`, named by its row and file name.
struct AudioCopies<'a> {
    out_dir: &'a Path,
    dataset: Option<&'a Path>,
    features: Option<&'a FeatureTables>,
    copied: BTreeMap<i64, String>,
}

impl<'a> AudioCopies<'a> {
    fn new(
        out_dir: &'a Path,
        dataset: Option<&'a Path>,
        features: Option<&'a FeatureTables>,
    ) -> Self {
        Self {
            out_dir,
            dataset,
            features,
            copied: BTreeMap::new(),
        }
    }

    /// The page-relative path of the clip's copy (`None` without a data set).
    fn copy(&mut self, clip: i64) -> anyhow::Result<Option<String>> {
        let (Some(dataset), Some(features)) = (self.dataset, self.features) else {
            return Ok(None);
        };
        if let Some(src) = self.copied.get(&clip) {
            return Ok(Some(src.clone()));
        }
        let file = &features.clips[clip as usize].file;
        let from = if Path::new(file).is_absolute() {
            Path::new(file).to_owned()
        } else {
            dataset.join(file)
        };
        let name: String = Path::new(file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let src = format!("{AUDIO_DIR}/{clip}-{name}");
        fs_err::create_dir_all(self.out_dir.join(AUDIO_DIR))?;
        fs_err::copy(&from, self.out_dir.join(&src)).with_context(|| {
            format!(
                "copying the audio of clip `{}`",
                features.clips[clip as usize].clip_id
            )
        })?;
        self.copied.insert(clip, src.clone());
        Ok(Some(src))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(
            escape("a <b> & \"c\" 'd'"),
            "a &lt;b&gt; &amp; &quot;c&quot; &#39;d&#39;"
        );
    }
}
