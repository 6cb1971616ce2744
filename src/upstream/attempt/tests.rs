//! The failover loop against scripted servers: no sockets, each turn's
//! outcome chosen by the test.

use std::sync::Mutex;

use super::*;
use crate::config::{Balance, ConnLimit, Queue};

const LONG: Duration = Duration::from_secs(60);

fn servers(n: usize, max_connections: usize, queue: usize) -> Servers {
    let list = (0..n)
        .map(|i| {
            let a = format!("127.0.0.1:{}", 9000 + i).parse().unwrap();
            let server = Server::new(a, Duration::from_secs(1));
            if max_connections > 0 {
                server.limit.set_terms(Some(ConnLimit {
                    max_connections,
                    queue: Queue {
                        size: queue,
                        timeout: Duration::from_secs(1),
                    },
                }));
            }
            Arc::new(server)
        })
        .collect();
    Servers::new(list, Balance::RoundRobin)
}

/// The index of `server` in `servers`.
fn index(servers: &Servers, server: &Arc<Server>) -> usize {
    servers
        .list
        .iter()
        .position(|s| Arc::ptr_eq(s, server))
        .unwrap()
}

/// No slot held and nothing counted in flight on any server.
fn all_given_back(servers: &Servers) -> bool {
    servers
        .list
        .iter()
        .all(|s| s.in_flight() == 0 && s.limit.held() == 0)
}

#[tokio::test]
async fn each_server_is_tried_once_and_an_unreachable_one_is_marked_down() {
    let s = servers(3, 1, 10);
    let turns = Mutex::new(Vec::new());
    let tried = s
        .attempt(None, LONG, |server, turn| {
            let mut turns = turns.lock().unwrap();
            turns.push((index(&s, server), turn.more));
            // A loop that forgot what it tried would go on: stop it.
            let retry = turns.len() <= 3;
            async move {
                Tried::<(), _>::Unreachable {
                    error: "refused",
                    retry,
                }
            }
        })
        .await;
    assert!(matches!(tried, Err(Unreached::Exhausted)));
    let turns = turns.into_inner().unwrap();
    let mut each: Vec<_> = turns.iter().map(|(i, _)| *i).collect();
    each.sort();
    assert_eq!(each, [0, 1, 2], "each server once");
    let more: Vec<_> = turns.iter().map(|(_, more)| *more).collect();
    assert_eq!(more, [true, true, false]);
    assert!(s.list.iter().all(|server| server.is_down()));
    assert!(all_given_back(&s));
}

#[tokio::test]
async fn a_failure_not_to_retry_ends_the_loop_and_marks_nothing() {
    let s = servers(3, 0, 0);
    for (retry, connect) in [(false, false), (false, true)] {
        let calls = Mutex::new(0);
        let tried = s
            .attempt(None, LONG, |_, _| {
                *calls.lock().unwrap() += 1;
                async move {
                    match connect {
                        true => Tried::<(), _>::Unreachable { error: "e", retry },
                        false => Tried::Failed { error: "e", retry },
                    }
                }
            })
            .await;
        assert!(matches!(tried, Err(Unreached::Failed("e"))));
        assert_eq!(calls.into_inner().unwrap(), 1);
        // Only a failed connect marks its server down.
        let down = s.list.iter().filter(|server| server.is_down()).count();
        assert_eq!(down, usize::from(connect));
        assert!(all_given_back(&s));
    }
}

#[tokio::test]
async fn a_retried_failure_asks_the_next_server_and_an_answer_marks_it_up() {
    let s = servers(2, 1, 10);
    // Both down: still tried (a refusal is learnt from the server).
    for server in &s.list {
        server.mark_down();
    }
    let first = Mutex::new(None);
    let reached = s
        .attempt(None, LONG, |server, _| {
            let i = index(&s, server);
            let answer = {
                let mut first = first.lock().unwrap();
                let answer = first.is_some();
                first.get_or_insert(i);
                answer
            };
            async move {
                match answer {
                    true => Tried::Answered {
                        value: i,
                        status: 204,
                    },
                    false => Tried::Failed {
                        error: "reset",
                        retry: true,
                    },
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the second server answers"));
    let failed = first.into_inner().unwrap().unwrap();
    assert_ne!(reached.value, failed, "the next server, not the same again");
    assert!(Arc::ptr_eq(reached.server, &s.list[reached.value]));
    assert!(!s.list[reached.value].is_down(), "an answer marks it up");
    assert!(
        s.list[failed].is_down(),
        "a failure after connecting marks nothing"
    );
    // The answer holds its slot until it is dropped.
    assert_eq!(s.list[reached.value].limit.held(), 1);
    assert_eq!(s.list[reached.value].in_flight(), 1);
    drop(reached);
    assert!(all_given_back(&s));
}

#[tokio::test(start_paused = true)]
async fn a_turn_past_the_timeout_gives_its_slot_back() {
    let s = servers(2, 1, 10);
    let never = |_, _| std::future::pending::<Tried<(), &str>>();
    let tried = s.attempt(None, Duration::from_secs(5), never).await;
    assert!(matches!(tried, Err(Unreached::TimedOut)));
    assert!(all_given_back(&s));
    assert!(!s.list.iter().any(|server| server.is_down()));
}

#[tokio::test(start_paused = true)]
async fn an_attempt_dropped_midway_gives_its_slot_back() {
    let s = servers(2, 1, 10);
    let never = |_, _| std::future::pending::<Tried<(), &str>>();
    // Dropped while its try is under way (a client that left): the slot
    // goes with it.
    let attempt = s.attempt(None, LONG, never);
    let cut = tokio::time::timeout(Duration::from_secs(1), attempt).await;
    assert!(cut.is_err());
    assert!(all_given_back(&s));
}

#[tokio::test]
async fn a_full_server_without_a_queue_is_busy_and_not_tried() {
    let s = servers(1, 1, 0);
    let held = s.list[0].admit().await.unwrap();
    let calls = Mutex::new(0);
    let tried = s
        .attempt(None, LONG, |_, _| {
            *calls.lock().unwrap() += 1;
            async {
                Tried::<(), &str>::Answered {
                    value: (),
                    status: 200,
                }
            }
        })
        .await;
    assert!(matches!(tried, Err(Unreached::Busy(Refused::Full))));
    assert_eq!(calls.into_inner().unwrap(), 0);
    drop(held);
    assert!(all_given_back(&s));
}

#[tokio::test]
async fn a_request_that_could_not_be_made_counts_nothing_against_the_server() {
    let s = servers(2, 1, 0);
    let mut turns = 0;
    let tried = s
        .attempt(None, LONG, |_, _| {
            turns += 1;
            async { Tried::<(), _>::Unsent { error: "bad uri" } }
        })
        .await;
    assert!(matches!(tried, Err(Unreached::Failed("bad uri"))));
    assert_eq!(turns, 1, "no other server is asked");
    assert!(all_given_back(&s));
    for server in &s.list {
        let errors: Vec<u64> = server
            .stats
            .errors
            .iter()
            .map(|e| e.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        assert_eq!(errors, [0, 0], "no failure of the server's");
        assert!(!server.is_down());
    }
}
