//! Notification attributes set by Write-Attributes (spec 5.1.2, 5.4.4).

use super::error::{OpError, OpResult};

#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Attributes {
    pub pmin: Option<u32>,
    pub pmax: Option<u32>,
    pub gt: Option<f64>,
    pub lt: Option<f64>,
    pub st: Option<f64>,
    pub epmin: Option<u32>,
    pub epmax: Option<u32>,
}

impl Attributes {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Applies `pmin=10&gt=…` style queries; a name without a value removes it.
    /// `level` is the number of path ids (1 object … 4 resource instance).
    pub fn apply(&self, queries: &[String], level: usize, numeric: bool) -> OpResult<Attributes> {
        let mut a = *self;
        if queries.is_empty() {
            return Err(OpError::BadRequest(
                "Write-Attributes without attributes".into(),
            ));
        }
        for q in queries {
            let (k, v) = match q.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (q.as_str(), None),
            };
            let int = |v: Option<&str>| -> OpResult<Option<u32>> {
                v.map(|s| {
                    s.parse::<u32>().map_err(|_| {
                        OpError::BadRequest(format!("{k}={s}: expected a whole number of seconds"))
                    })
                })
                .transpose()
            };
            let num = |v: Option<&str>| -> OpResult<Option<f64>> {
                v.map(|s| {
                    s.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .ok_or_else(|| OpError::BadRequest(format!("{k}={s}: expected a number")))
                })
                .transpose()
            };
            match k {
                "pmin" => a.pmin = int(v)?,
                "pmax" => a.pmax = int(v)?,
                "epmin" => a.epmin = int(v)?,
                "epmax" => a.epmax = int(v)?,
                "gt" | "lt" | "st" => {
                    if level < 3 {
                        return Err(OpError::BadRequest(format!(
                            "{k} applies to resources only"
                        )));
                    }
                    if !numeric && v.is_some() {
                        return Err(OpError::BadRequest(format!(
                            "{k} applies to numeric resources only"
                        )));
                    }
                    let n = num(v)?;
                    match k {
                        "gt" => a.gt = n,
                        "lt" => a.lt = n,
                        _ => {
                            if n.is_some_and(|s| s < 0.0) {
                                return Err(OpError::BadRequest("st must not be negative".into()));
                            }
                            a.st = n
                        }
                    }
                }
                _ => return Err(OpError::BadRequest(format!("unknown attribute {k:?}"))),
            }
        }
        if let (Some(lo), Some(hi)) = (a.pmin, a.pmax) {
            if hi < lo {
                return Err(OpError::BadRequest(format!(
                    "pmax {hi} is less than pmin {lo}"
                )));
            }
        }
        if let (Some(lt), Some(gt)) = (a.lt, a.gt) {
            let st = a.st.unwrap_or(0.0);
            // Spec 5.1.2: lt + 2*st < gt (and lt < gt without st).
            if lt + 2.0 * st >= gt {
                return Err(OpError::BadRequest(format!(
                    "lt + 2*st must be below gt ({lt} + 2*{st} >= {gt})"
                )));
            }
        }
        Ok(a)
    }

    /// Attributes as link-format parameters, for Discover.
    pub fn link_params(&self) -> Vec<(String, Option<String>)> {
        let mut v = Vec::new();
        let mut push = |k: &str, val: Option<String>| {
            if let Some(val) = val {
                v.push((k.to_string(), Some(val)));
            }
        };
        push("pmin", self.pmin.map(|x| x.to_string()));
        push("pmax", self.pmax.map(|x| x.to_string()));
        push("gt", self.gt.map(|x| x.to_string()));
        push("lt", self.lt.map(|x| x.to_string()));
        push("st", self.st.map(|x| x.to_string()));
        push("epmin", self.epmin.map(|x| x.to_string()));
        push("epmax", self.epmax.map(|x| x.to_string()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn sets_and_clears() {
        let a = Attributes::default()
            .apply(&q(&["pmin=10", "pmax=60"]), 2, false)
            .unwrap();
        assert_eq!((a.pmin, a.pmax), (Some(10), Some(60)));
        let a = a.apply(&q(&["pmin"]), 2, false).unwrap();
        assert_eq!((a.pmin, a.pmax), (None, Some(60)));
    }

    #[test]
    fn rejects_what_the_spec_forbids() {
        let d = Attributes::default();
        assert!(d.apply(&q(&["pmin=x"]), 3, true).is_err());
        assert!(
            d.apply(&q(&["gt=5"]), 2, true).is_err(),
            "gt on an instance"
        );
        assert!(d.apply(&q(&["gt=5"]), 3, false).is_err(), "gt on a string");
        assert!(d.apply(&q(&["pmin=60", "pmax=10"]), 3, true).is_err());
        assert!(
            d.apply(&q(&["lt=10", "gt=20", "st=5"]), 3, true).is_err(),
            "10 + 2*5 is not < 20"
        );
        assert!(d.apply(&q(&["lt=10", "gt=20", "st=4.9"]), 3, true).is_ok());
        assert!(d.apply(&q(&["st=-1"]), 3, true).is_err());
        assert!(d.apply(&q(&["foo=1"]), 3, true).is_err());
        assert!(d.apply(&[], 3, true).is_err());
    }
}
