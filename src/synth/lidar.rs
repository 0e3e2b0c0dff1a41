//! The sensor model: an HDL-64E-like spinning lidar (64 beams, upper block +2.0 to -8.33 deg at
//! 1/3 deg, lower block -8.87 to -24.9 deg at about 1/2 deg; 2048 azimuth steps), nearest-hit ray
//! casting, range noise, dropout (random, glass, foliage, weak far returns), an intensity model
//! (reflectivity x incidence x range falloff; retroreflectors stay bright) and rare outliers.

use super::raycast::{column_azimuth, ground_column, ground_hit, hit_span, ColumnIndex, Face, GroundPart, Span};
use super::scene::{Mat, Rng, Scene, NO_ACTOR};

/// Sensor parameters.
#[derive(Clone, Debug)]
pub struct Lidar {
    /// Beam elevations (degrees), top to bottom.
    pub elevations: Vec<f32>,
    /// Azimuth steps per revolution.
    pub azimuths: usize,
    /// Maximum 3-D range (m); rays that hit nothing closer return nothing.
    pub max_range: f32,
    /// Range noise sigma (m).
    pub range_sigma: f32,
    /// Random dropout probability of any return.
    pub dropout: f32,
    /// Probability that a return is an outlier (spurious range).
    pub outliers: f32,
    /// Intensity: weight of the incidence cosine (0 = none, 1 = Lambertian).
    pub incidence_weight: f32,
    /// Intensity: 1 / (1 + (range / falloff)^2).
    pub falloff: f32,
    /// Additive intensity noise sigma.
    pub intensity_sigma: f32,
    /// Receiver gain applied to diffuse returns.
    pub gain: f32,
}

/// HDL-64E-like beam elevations in degrees, top to bottom (upper block denser).
pub fn hdl64_elevations() -> Vec<f32> {
    let upper = (0..32).map(|i| 2.0 - i as f32 * (10.33 / 31.0));
    let lower = (0..32).map(|i| -8.87 - i as f32 * ((24.9 - 8.87) / 31.0));
    upper.chain(lower).collect()
}

impl Default for Lidar {
    fn default() -> Self {
        Lidar {
            elevations: hdl64_elevations(),
            azimuths: 2048,
            max_range: 80.0,
            range_sigma: 0.02,
            dropout: 0.025,
            outliers: 0.0005,
            incidence_weight: 0.45,
            falloff: 90.0,
            intensity_sigma: 0.035,
            gain: 1.42,
        }
    }
}

/// A scan plus per-actor ray counts (for occlusion levels).
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// x, y, z, intensity in the lidar frame.
    pub points: Vec<[f32; 4]>,
    /// Returns kept in the scan, per actor.
    pub actor_points: Vec<u32>,
    /// Rays whose nearest hit is the actor (before dropout), per actor.
    pub actor_seen: Vec<u32>,
    /// Rays that would hit the actor with no other object in the way, per actor.
    pub actor_rays: Vec<u32>,
}

enum Hit {
    Ground(GroundPart),
    Box(usize, Face, f32),
}

#[inline]
fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

impl Lidar {
    /// Casts every ray of one revolution through `scene`. Deterministic given `rng`'s state.
    pub fn scan(&self, scene: &Scene, rng: &mut Rng) -> Scan {
        let n_act = scene.actors.len();
        let mut scan = Scan {
            points: Vec::with_capacity(self.azimuths * self.elevations.len()),
            actor_points: vec![0; n_act],
            actor_seen: vec![0; n_act],
            actor_rays: vec![0; n_act],
        };
        let phase = rng.range(0.0, 2.0 * std::f32::consts::PI / self.azimuths as f32);
        let index = ColumnIndex::build(&scene.prims, self.azimuths, phase);
        let beams: Vec<(f32, f32, f32)> = self
            .elevations
            .iter()
            .map(|e| {
                let r = e.to_radians();
                (r.tan(), r.cos(), r.sin())
            })
            .collect();
        let g = &scene.ground;
        let mut spans: Vec<Span> = Vec::new();
        let mut actor_spans: Vec<Span> = Vec::new();
        let mut last_ray = vec![u32::MAX; n_act];
        let mut ray_id = 0u32;
        for a in 0..self.azimuths {
            let az = column_azimuth(self.azimuths, phase, a);
            let (sa, ca) = az.sin_cos();
            spans.clear();
            actor_spans.clear();
            for &i in index.column(a) {
                if let Some(s) = super::raycast::span(&scene.prims[i as usize], i, ca, sa) {
                    spans.push(s);
                    if s.actor != NO_ACTOR {
                        actor_spans.push(s);
                    }
                }
            }
            spans.sort_unstable_by(|x, y| x.t0.total_cmp(&y.t0).then(x.prim.cmp(&y.prim)));
            let gc = ground_column(g, ca, sa);
            for &(tan_el, ce, se) in &beams {
                ray_id += 1;
                let r_lim = self.max_range * ce;
                let mut best = r_lim;
                let mut hit = None;
                if let Some((r, part)) = ground_hit(g, gc, tan_el) {
                    if r < best {
                        best = r;
                        hit = Some(Hit::Ground(part));
                    }
                }
                for s in &spans {
                    if s.t0 >= best {
                        break;
                    }
                    if let Some((r, face)) = hit_span(s, tan_el, best) {
                        best = r;
                        hit = Some(Hit::Box(s.prim as usize, face, (s.nx * ca + s.ny * sa).abs()));
                    }
                }
                for s in &actor_spans {
                    let act = s.actor as usize;
                    if last_ray[act] != ray_id && hit_span(s, tan_el, r_lim).is_some() {
                        last_ray[act] = ray_id;
                        scan.actor_rays[act] += 1;
                    }
                }
                let Some(hit) = hit else { continue };
                // Surface properties at the hit: reflectivity, material, incidence cosine.
                let (refl, mat, cos_inc, actor) = match hit {
                    Hit::Ground(part) => {
                        let (x, y) = (best * ca, best * sa);
                        let (u, v) = g.to_street(x, y);
                        match part {
                            GroundPart::Road => (g.road_refl(u, v), Mat::Diffuse, ce * (gc.slope - tan_el), NO_ACTOR),
                            GroundPart::Sidewalk => (g.refl_walk, Mat::Diffuse, ce * (gc.slope - tan_el), NO_ACTOR),
                            GroundPart::Curb => (g.refl_walk + 0.05, Mat::Diffuse, ce * gc.vd.abs(), NO_ACTOR),
                        }
                    }
                    Hit::Box(i, face, side_cos) => {
                        let p = &scene.prims[i];
                        let cos = match face {
                            Face::Side => ce * side_cos,
                            Face::Top | Face::Bottom => se.abs(),
                        };
                        (p.refl, p.mat, cos, p.actor)
                    }
                };
                if actor != NO_ACTOR {
                    scan.actor_seen[actor as usize] += 1;
                }
                let mut range = best / ce;
                // Detection: random dropout, glass and foliage losses, weak far returns.
                let signal = refl * (0.2 + 0.8 * cos_inc) * (25.0 / range.max(25.0)).powi(2);
                let mut p_drop = self.dropout + 0.6 * (1.0 - smoothstep(0.0, 0.012, signal));
                p_drop += match mat {
                    Mat::Glass => 0.65,
                    Mat::Foliage => 0.08,
                    _ => 0.0,
                };
                if rng.f32() < p_drop {
                    continue;
                }
                range += self.range_sigma * rng.normal();
                let outlier = rng.f32() < self.outliers;
                if outlier {
                    range *= rng.range(0.2, 1.0);
                }
                if range > self.max_range || range < 0.5 {
                    continue;
                }
                let fall = 1.0 / (1.0 + (range / self.falloff).powi(2));
                let inc = self.gain * (1.0 - self.incidence_weight + self.incidence_weight * cos_inc.clamp(0.0, 1.0));
                let mut intensity = match mat {
                    Mat::Retro => refl * (0.92 + 0.08 * cos_inc) - 0.04 * rng.f32(),
                    Mat::Foliage => refl * inc * fall * rng.range(0.5, 1.4),
                    Mat::Diffuse | Mat::Glass => refl * inc * fall,
                };
                if mat != Mat::Retro {
                    intensity += self.intensity_sigma * rng.normal();
                }
                if outlier {
                    intensity *= 0.5;
                }
                let intensity = (intensity * 100.0).round() / 100.0;
                let ch = range * ce;
                scan.points.push([ch * ca, ch * sa, range * se, intensity.clamp(0.0, 0.99)]);
                if actor != NO_ACTOR {
                    scan.actor_points[actor as usize] += 1;
                }
            }
        }
        scan
    }
}
