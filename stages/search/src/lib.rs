//! `pipeline search`: type a description, get the clips a trained model ranks first, over a
//! split of its data set or a folder of the user's own audio. Registered as a domain command,
//! so the executor knows nothing of it.

mod corpus;
mod model;
mod query;
mod render;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, FromArgMatches};
use pipeline_api::{DomainCommand, ProjectView, Registry, UsageError};
use pipeline_formats::{FeatureTables, Split};
use pipeline_learn::device::resolve as resolve_device;
use pipeline_learn::embedding::{embed_token_ids, load_model};
use pipeline_learn::params::DeviceChoice;

use render::{Answer, Ranked};

/// Registers `pipeline search`.
pub fn register(registry: &mut Registry) {
    registry.register_command(Search);
}

/// Text-to-audio search with a trained model: the clips that best match a description.
#[derive(Debug, Args)]
struct SearchArgs {
    /// What the sound is like ("a dog barks while cars pass").
    query: String,
    /// The model: a `train` or `distill` node, or a stage (its best member on validation).
    /// Default: the Stage-2 student with the best validation mAP@10, else the best model.
    #[arg(long, value_name = "NODE")]
    model: Option<String>,
    /// A second model, ranked side by side with the first.
    #[arg(long, value_name = "NODE")]
    compare: Option<String>,
    /// How many clips to show.
    #[arg(short, long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    k: u32,
    /// The clips of the model's data set to search: `test`, `val`, `train` or `all`.
    #[arg(long, default_value = "test", value_parser = ["test", "val", "train", "all"])]
    split: String,
    /// Search the audio files under DIR instead (wav, flac, mp3, ogg; each embedded once per
    /// model and cached by content).
    #[arg(long, value_name = "DIR", conflicts_with = "split")]
    audio: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

struct Search;

impl DomainCommand for Search {
    fn command(&self) -> clap::Command {
        SearchArgs::augment_args(clap::Command::new("search")).about(
            "Search the clips of a split, or a folder of audio, with a trained model's text query",
        )
    }

    fn run(&self, matches: &clap::ArgMatches, project: &dyn ProjectView) -> anyhow::Result<()> {
        let args = SearchArgs::from_arg_matches(matches)?;
        let started = Instant::now();
        let nodes = project.nodes()?;
        let cache = project.cache_dir("search")?;
        let mut models = vec![model::resolve(&nodes, args.model.as_deref())?];
        if let Some(other) = &args.compare {
            models.push(model::resolve(&nodes, Some(other))?);
        }
        let split = match args.split.as_str() {
            "all" => None,
            s => Some(s.parse::<Split>().expect("clap checked it")),
        };
        let compute = resolve_device(DeviceChoice::Auto, None)?;
        let device = &compute.device;
        let show_progress = !args.json && std::io::stderr().is_terminal();
        let mut ranked = Vec::new();
        let mut notes = Vec::new();
        for m in &models {
            let (encoder, config) = load_model(&m.dir, device)?;
            let tables = FeatureTables::load(&m.features.dir)?;
            let tokens = query::encode(
                &args.query,
                &tables.vocab,
                m.features.tokenizer.as_deref(),
                m.features.params.max_tokens,
            )?;
            if !tokens.unknown.is_empty() {
                notes.push(render::unknown_note(&m.node, &tokens.unknown));
            }
            let query = embed_token_ids(&encoder, tokens.ids, device);
            let corpus = match &args.audio {
                None => corpus::split(m, &tables, &encoder, split, &cache, device)?,
                Some(dir) => corpus::folder(m, &encoder, dir, &cache, device, &|done, total| {
                    if show_progress {
                        eprint!(
                            "\rembedding the audio for `{}`: {done}/{total} files",
                            m.node
                        );
                        if done == total {
                            eprintln!();
                        }
                    }
                })?,
            };
            if corpus.items.is_empty() {
                let unreadable = match corpus.skipped.first() {
                    Some((path, why)) => format!(
                        "; {} file(s) could not be read, such as `{}`: {why}",
                        corpus.skipped.len(),
                        path.display()
                    ),
                    None => String::new(),
                };
                return Err(UsageError::new(format!(
                    "there is nothing to search: the {} has no clips{unreadable}",
                    args.audio.as_ref().map_or_else(
                        || format!("{} split", args.split),
                        |d| format!("folder `{}`", d.display())
                    )
                ))
                .into());
            }
            anyhow::ensure!(
                corpus.dim() == config.embed_dim,
                "the cached embeddings of `{}` do not match the model; delete `{}`",
                m.node,
                cache.display()
            );
            ranked.push(Ranked::new(m, &query, corpus, args.k as usize));
        }
        let answer = Answer {
            query: &args.query,
            source: args.audio.as_ref().map_or_else(
                || format!("split {}", args.split),
                |d| format!("folder {}", d.display()),
            ),
            ranked: &ranked,
            notes: &notes,
        };
        if args.json {
            render::emit(&format!(
                "{}\n",
                serde_json::to_string_pretty(&answer.json())?
            ));
        } else {
            render::emit(&answer.text());
        }
        // Every model reads the same folder: its unreadable files once.
        for (path, why) in &ranked[0].corpus.skipped {
            eprintln!("skipped `{}`: {why}", path.display());
        }
        for note in &notes {
            eprintln!("note: {note}");
        }
        let embedded: usize = ranked.iter().map(|r| r.corpus.embedded).sum();
        if !args.json {
            eprintln!(
                "answered in {:.2} s{}",
                started.elapsed().as_secs_f64(),
                if embedded == 0 {
                    " (embeddings from the cache)".to_owned()
                } else {
                    format!(" ({embedded} clips embedded and cached)")
                }
            );
        }
        Ok(())
    }
}
