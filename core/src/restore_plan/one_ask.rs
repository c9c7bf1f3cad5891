//! One ask as a planner: how a state machine's single read of the bucket
//! ([`crate::Command::ReadBucket`]) is carried out by the drivers that answer
//! planners, with their read retries and their paging, and handed back whole.

use super::ask::{Answer, Ask, PlanError, Planner, unexpected};

/// Asks `ask` once and gathers its answer: a listing's pages into one.
#[derive(Debug)]
pub struct OneAsk {
    ask: Option<Ask>,
    answer: Option<Answer>,
    complete: bool,
}

impl OneAsk {
    pub fn new(ask: Ask) -> Self {
        OneAsk {
            ask: Some(ask),
            answer: None,
            complete: false,
        }
    }

    /// The answer, once [`Planner::is_complete`]: a listing as one page.
    pub fn into_answer(self) -> Option<Answer> {
        self.answer.filter(|_| self.complete)
    }
}

impl Planner for OneAsk {
    fn poll_ask(&mut self) -> Option<Ask> {
        self.ask.take()
    }

    fn handle_answer(&mut self, answer: Answer) -> Result<(), PlanError> {
        if self.complete || self.ask.is_some() {
            return Err(unexpected(&answer));
        }
        self.complete = answer.ends_listing();
        match (&mut self.answer, answer) {
            (
                Some(Answer::Objects {
                    prefix,
                    objects,
                    more,
                }),
                Answer::Objects {
                    prefix: page_prefix,
                    objects: page,
                    more: page_more,
                },
            ) if *prefix == page_prefix => {
                objects.extend(page);
                *more = page_more;
            }
            (None, answer) => self.answer = Some(answer),
            (Some(_), answer) => return Err(unexpected(&answer)),
        }
        Ok(())
    }

    fn is_complete(&self) -> bool {
        self.complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::ListedObject;
    use crate::timestamp::Timestamp;

    fn object(name: &str) -> ListedObject {
        ListedObject {
            name: crate::object_name::ObjectName::listed(name),
            updated: Timestamp::UNIX_EPOCH,
            size: 1,
            generation: None,
            sealed: false,
        }
    }

    fn page(names: &[&str], more: bool) -> Answer {
        Answer::Objects {
            prefix: "db-backup/".to_owned(),
            objects: names.iter().map(|n| object(n)).collect(),
            more,
        }
    }

    #[test]
    fn a_listing_comes_back_as_one_page_once_its_last_page_is_in() {
        let ask = Ask::ListObjects {
            prefix: "db-backup/".to_owned(),
            versions: false,
        };
        let mut one = OneAsk::new(ask.clone());
        assert_eq!(one.poll_ask(), Some(ask));
        assert_eq!(one.poll_ask(), None, "asked once");
        one.handle_answer(page(&["a", "b"], true)).unwrap();
        assert!(!one.is_complete());
        one.handle_answer(page(&["c"], false)).unwrap();
        assert!(one.is_complete());
        assert_eq!(one.into_answer(), Some(page(&["a", "b", "c"], false)));
    }

    #[test]
    fn an_answer_to_something_else_or_after_the_end_is_refused() {
        let mut one = OneAsk::new(Ask::ReadHistory);
        assert!(
            one.handle_answer(Answer::History { bytes: None }).is_err(),
            "not asked yet"
        );
        let _ = one.poll_ask();
        one.handle_answer(Answer::History { bytes: None }).unwrap();
        assert!(one.handle_answer(page(&["a"], false)).is_err());
        assert_eq!(one.into_answer(), Some(Answer::History { bytes: None }));
    }
}
