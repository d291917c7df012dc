//! The hub's side of group filters: which instances run over whom (derived from the session, as
//! desired state), the experiment's aggregator thread, and what becomes of its results (the
//! event log, `GET_FILTERS_DATA`, `GET_GROUP_FILTERS_DATA` and its pushes to dashboards).
//!
//! An instance (a group filter id) runs over the participants whose `video_group_filters` or
//! `audio_group_filters` hold it, from CREATE_EXPERIMENT until STOP, across late joins and
//! rejoins (a seat's tracks keep feeding it). Before START its clock counts from the
//! experiment's creation and nothing is logged; START restarts it on the recording's clock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use filters::group::GROUP_REPORT_PREFIX;
use filters::{GroupResult, Sample};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::errors;
use super::experiment::ExperimentState;
use super::{ConnId, Hub, Input};
use crate::media::group::{GroupConfig, GroupEvent, GroupWorker, InstanceSpec};
use crate::media::Kind;
use crate::protocol::outgoing::{group_filters_data, GroupFilterData};
use crate::protocol::{GetGroupFiltersDataRequest, WireError};
use crate::session::{Session, SessionId};

/// Results kept per instance for `GET_GROUP_FILTERS_DATA` (a dashboard's chart history).
const HISTORY: usize = 2000;
/// Results per instance in a `GET_GROUP_FILTERS_DATA` reply unless it asks for another number.
const DEFAULT_RESULTS: usize = 300;

/// One instance as the session defines it, with its medium.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub spec: InstanceSpec,
    pub kind: Kind,
}

/// The group filter instances of a session: one per id found in the participants' group lists,
/// its members in session order, its parameters those of its first member (SET_GROUP_FILTERS
/// gives every participant the same list). Pure: the experiment's desired state.
pub fn desired_instances(session: &Session) -> Vec<Instance> {
    let mut out: Vec<Instance> = Vec::new();
    for p in &session.participants {
        for (kind, list) in [(Kind::Video, &p.video_group_filters), (Kind::Audio, &p.audio_group_filters)] {
            for f in list.iter() {
                match out.iter_mut().find(|i| i.spec.id == f.id) {
                    Some(i) => {
                        if !i.spec.members.iter().any(|m| m == p.id.as_str()) {
                            i.spec.members.push(p.id.to_string());
                        }
                    }
                    None => out.push(Instance {
                        spec: InstanceSpec {
                            id: f.id.clone(),
                            name: f.name.clone(),
                            config: f.config.clone(),
                            members: vec![p.id.to_string()],
                        },
                        kind,
                    }),
                }
            }
        }
    }
    out
}

/// What the hub keeps of an experiment's group filters.
#[derive(Default)]
pub struct GroupState {
    pub worker: Option<GroupWorker>,
    pub instances: Vec<Instance>,
    /// Recent results per instance id, oldest first.
    pub results: HashMap<String, VecDeque<Arc<GroupResult>>>,
    /// Each member's latest individual value per instance id.
    pub latest: HashMap<(String, String), (f64, Option<Sample>)>,
    /// Experimenter connections that asked for pushes.
    pub watchers: HashSet<ConnId>,
}

/// A member's data of one instance for `GET_FILTERS_DATA`: `{value, t_ms, results}`, `value`
/// its latest individual value (an array, `null` when the step had none), `results` the latest
/// result of each pair it is in keyed by the other member (`show` names them as the caller
/// sees them), or under `"group"` for whole-group results. `None` before it has any.
pub fn member_data(g: &GroupState, id: &str, pid: &str, show: impl Fn(&str) -> String) -> Option<Value> {
    let latest = g.latest.get(&(id.to_owned(), pid.to_owned()));
    let mut results = serde_json::Map::new();
    for r in g.results.get(id).into_iter().flatten().rev() {
        if !r.members.iter().any(|m| m == pid) {
            continue;
        }
        let key = match r.members.as_slice() {
            [a, b] => show(if a == pid { b } else { a }),
            _ => "group".to_owned(),
        };
        results.entry(key).or_insert_with(|| r.value.clone());
    }
    if latest.is_none() && results.is_empty() {
        return None;
    }
    let (t, v) = latest.map_or((None, None), |(t, v)| (Some(*t), *v));
    Some(json!({"value": v.map(|s| s.as_slice().to_vec()), "t_ms": t, "results": results}))
}

impl Hub {
    /// Brings an experiment's group filters to what its session says: starts the aggregator
    /// thread when the first instance appears, hands it the instances and the clock, and
    /// pushes every member's analysis to its tracks.
    pub(crate) fn apply_groups(&mut self, sid: &SessionId) {
        let Some(session) = self.sessions.get(sid) else { return };
        let Some(exp) = self.experiments.get(sid) else { return };
        let wanted = if exp.state == ExperimentState::Ended { Vec::new() } else { desired_instances(session) };
        let changed = wanted != exp.group.instances;
        if wanted.is_empty() && exp.group.worker.is_none() {
            return;
        }
        if exp.group.worker.is_none() {
            let (tx, mut rx) = mpsc::unbounded_channel::<GroupEvent>();
            let hub = self.tx.clone();
            let s = sid.clone();
            tokio::spawn(async move {
                while let Some(ev) = rx.recv().await {
                    if hub.send(Input::Group { session_id: s.clone(), ev }).await.is_err() {
                        break;
                    }
                }
            });
            match GroupWorker::spawn(sid.as_str(), tx) {
                Ok(w) => {
                    if let Some(e) = self.experiments.get_mut(sid) {
                        e.group.worker = Some(w);
                    }
                }
                Err(e) => {
                    tracing::error!(session = %sid, error = %e, "cannot start the group-filter aggregator");
                    return;
                }
            }
        }
        let Some(exp) = self.experiments.get_mut(sid) else { return };
        if let Some(w) = &exp.group.worker {
            w.configure(GroupConfig { t0: exp.clock_zero, instances: wanted.iter().map(|i| i.spec.clone()).collect() });
        }
        let known: HashSet<&str> = wanted.iter().map(|i| i.spec.id.as_str()).collect();
        // Results of instances that are gone are no longer shown.
        for gone in exp.group.instances.iter().filter(|i| !known.contains(i.spec.id.as_str())) {
            for m in exp.media.values() {
                m.video.peer_report(format!("{GROUP_REPORT_PREFIX}{}", gone.spec.id), gone.spec.name.clone(), None);
            }
        }
        exp.group.results.retain(|k, _| known.contains(k.as_str()));
        exp.group.latest.retain(|(k, _), _| known.contains(k.as_str()));
        exp.group.instances = wanted;
        if changed {
            self.log_group_config(sid);
        }
        self.apply_media(sid, None);
    }

    /// The instances with their parameters and members, into the event log (at START and on
    /// every change while running).
    pub(crate) fn log_group_config(&self, sid: &SessionId) {
        let Some(exp) = self.experiments.get(sid) else { return };
        if exp.state != ExperimentState::Running || exp.group.instances.is_empty() {
            return;
        }
        let instances: Vec<Value> = exp
            .group
            .instances
            .iter()
            .map(|i| {
                let windowing = crate::media::group::build(&i.spec).ok().map(|(_, a)| {
                    let w = *a.windowing();
                    json!({"rate_hz": w.rate_hz, "window_ms": w.window_ms, "step_ms": w.step_ms,
                           "lead_ms": w.lead_ms, "max_gap_ms": w.max_gap_ms,
                           "scope": format!("{:?}", w.scope).to_lowercase()})
                });
                json!({"filter_id": i.spec.id, "filter_name": i.spec.name, "channel": i.kind.as_str(),
                       "config": i.spec.config, "members": i.spec.members, "windowing": windowing})
            })
            .collect();
        self.log(sid, "group_filter_config", json!({ "instances": instances }));
    }

    /// What the experiment's aggregator reports.
    pub(crate) fn on_group_event(&mut self, sid: &SessionId, ev: GroupEvent) {
        let Some(exp) = self.experiments.get_mut(sid) else { return };
        let running = exp.state == ExperimentState::Running;
        match ev {
            GroupEvent::Results { id, name, results } => {
                let kept = exp.group.results.entry(id.to_string()).or_default();
                let results: Vec<Arc<GroupResult>> = results.into_iter().map(Arc::new).collect();
                for r in &results {
                    kept.push_back(r.clone());
                    if kept.len() > HISTORY {
                        kept.pop_front();
                    }
                }
                // Members' chains get their latest result (GROUP_DISPLAY draws it where a design
                // asks for it).
                for r in &results {
                    for m in &r.members {
                        let Some(media) = exp.media.get(m.as_str()) else { continue };
                        let with = match r.members.as_slice() {
                            [a, b] => if a == m { b } else { a }.clone(),
                            _ => "group".to_owned(),
                        };
                        let data = json!({"value": r.value, "with": with, "window_end_ms": r.window_end_ms});
                        media.video.peer_report(format!("{GROUP_REPORT_PREFIX}{id}"), name.to_owned(), Some(data));
                    }
                }
                if running {
                    for r in &results {
                        self.log(
                            sid,
                            "group_filter_result",
                            json!({"filter_id": &*id, "filter_name": name, "members": r.members,
                                   "window_end_ms": r.window_end_ms, "value": r.value, "n_samples": r.n_samples}),
                        );
                    }
                }
                self.push_group_results(sid, &id, name, &results);
            }
            GroupEvent::Series { id, name, member, points } => {
                if let Some(last) = points.last() {
                    exp.group.latest.insert((id.to_string(), member.to_string()), *last);
                }
                if running {
                    let t: Vec<f64> = points.iter().map(|(t, _)| (t * 1000.0).round() / 1000.0).collect();
                    let values: Vec<Value> =
                        points.iter().map(|(_, v)| v.map_or(Value::Null, |s| json!(s.as_slice()))).collect();
                    self.log(
                        sid,
                        "group_filter_series",
                        json!({"filter_id": &*id, "filter_name": name, "participant_id": &*member,
                               "t_ms": t, "values": values}),
                    );
                }
            }
            GroupEvent::Rejected { id, why } => {
                tracing::warn!(session = %sid, filter_id = %id, %why, "group filter instance not started");
            }
        }
    }

    /// `GET_GROUP_FILTERS_DATA`: the instances, their members and recent results; with
    /// `subscribe`, this connection gets every new result pushed.
    pub(crate) fn get_group_filters_data(
        &mut self,
        id: ConnId,
        r: GetGroupFiltersDataRequest,
    ) -> Result<(), WireError> {
        let sid = self.joined(id).ok_or_else(|| errors::not_connected("Failed to get group filters data."))?;
        let Some(exp) = self.experiments.get_mut(&sid) else { return Err(errors::no_experiment()) };
        if r.filter_id != "all" && !exp.group.instances.iter().any(|i| i.spec.id == r.filter_id) {
            return Err(errors::unknown_filter_id(&r.filter_id));
        }
        match r.subscribe {
            Some(true) => {
                exp.group.watchers.insert(id);
            }
            Some(false) => {
                exp.group.watchers.remove(&id);
            }
            None => {}
        }
        let n = r.results.unwrap_or(DEFAULT_RESULTS);
        let g = &exp.group;
        let data: Vec<GroupFilterData<'_>> = g
            .instances
            .iter()
            .filter(|i| r.filter_id == "all" || i.spec.id == r.filter_id)
            .map(|i| {
                let kept = g.results.get(&i.spec.id);
                let skip = kept.map_or(0, |k| k.len().saturating_sub(n));
                let results = kept.into_iter().flatten().skip(skip).map(|r| &**r);
                GroupFilterData::new(&i.spec.id, &i.spec.name, i.kind.as_str(), &i.spec.members, results)
            })
            .collect();
        let msg = group_filters_data(&data, false);
        self.send(id, msg);
        Ok(())
    }

    /// New results to the dashboards that asked for them.
    fn push_group_results(&mut self, sid: &SessionId, id: &str, name: &str, results: &[Arc<GroupResult>]) {
        let Some(exp) = self.experiments.get_mut(sid) else { return };
        let experimenters = &exp.experimenters;
        exp.group.watchers.retain(|c| experimenters.contains(c));
        if exp.group.watchers.is_empty() {
            return;
        }
        let Some(i) = exp.group.instances.iter().find(|i| i.spec.id == id) else { return };
        let data =
            GroupFilterData::new(&i.spec.id, name, i.kind.as_str(), &i.spec.members, results.iter().map(|r| &**r));
        let msg = group_filters_data(&[data], true);
        for c in exp.group.watchers.clone() {
            self.send(c, msg.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{parse_session_str, testdata::MAIN_FORMAT_EXAMPLE};

    fn filter(name: &str, id: &str, config: Value) -> Value {
        json!({"name": name, "id": id, "channel": "video", "groupFilter": true, "config": config})
    }

    /// The example session (participants Max, Erika, Bob) with group lists set per participant.
    fn session(lists: &[(&str, &str, Vec<Value>)]) -> Session {
        let mut v: Value = serde_json::from_str(MAIN_FORMAT_EXAMPLE).unwrap();
        for (i, (video_or_audio, _, list)) in lists.iter().enumerate() {
            v["participants"][i][format!("{video_or_audio}_group_filters")] = json!(list);
        }
        parse_session_str(&v.to_string()).unwrap()
    }

    #[test]
    fn instances_are_the_ids_of_the_group_lists_with_their_members_in_session_order() {
        let ms = filter("MOTION_SYNC", "ms", json!({"window_ms": 5000}));
        let mut sp = filter("SPEECH_SYNC", "sp", json!({}));
        sp["channel"] = json!("audio");
        let s = session(&[
            ("video", "Max", vec![ms.clone()]),
            ("audio", "Erika", vec![sp.clone()]),
            ("video", "Bob", vec![filter("MOTION_SYNC", "ms", json!({"window_ms": 9000}))]),
        ]);
        let got = desired_instances(&s);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!((got[0].spec.id.as_str(), got[0].kind), ("ms", Kind::Video));
        assert_eq!(got[0].spec.members, ["9ba5fdccde", "8e39086e83"]);
        assert_eq!(got[0].spec.config, json!({"window_ms": 5000}), "the first member's parameters");
        assert_eq!((got[1].spec.id.as_str(), got[1].kind), ("sp", Kind::Audio));
        assert_eq!(got[1].spec.members, ["25a882669d"]);
        assert!(desired_instances(&session(&[])).is_empty());
    }

    #[test]
    fn a_members_data_is_its_latest_value_and_latest_result_per_other_member() {
        let mut g = GroupState::default();
        assert_eq!(member_data(&g, "ms", "a", str::to_owned), None, "nothing before any data");
        let result = |members: &[&str], end: f64, r: f64| {
            Arc::new(GroupResult {
                members: members.iter().map(|m| m.to_string()).collect(),
                window_end_ms: end,
                value: json!({"r": r}),
                n_samples: 10,
            })
        };
        g.results.insert(
            "ms".into(),
            [result(&["a", "b"], 1000.0, 0.1), result(&["a", "b"], 2000.0, 0.2), result(&["b", "c"], 2000.0, 0.9)]
                .into(),
        );
        g.latest.insert(("ms".into(), "a".into()), (1990.0, Some(Sample::scalar(0.5))));
        let d = member_data(&g, "ms", "a", |o| format!("alias-{o}")).unwrap();
        assert_eq!(d, json!({"value": [0.5], "t_ms": 1990.0, "results": {"alias-b": {"r": 0.2}}}));
        let c = member_data(&g, "ms", "c", str::to_owned).unwrap();
        assert_eq!(c, json!({"value": null, "t_ms": null, "results": {"b": {"r": 0.9}}}));
    }
}
