//! Actors and street furniture built from oriented boxes: cars and vans (body, glass cabin,
//! roof, wheels, retroreflective plates and lights), trucks (cab + cargo), pedestrians (legs,
//! torso, arms, head), people sitting, cyclists (wheels, frame, rider), trees (trunk + rough
//! crown), bushes, poles and signs. Each labelled actor's boxes lie inside its label box.

use std::f32::consts::PI;

use super::scene::{Builder, Class, Mat};

impl Builder<'_> {
    fn paint(&mut self) -> f32 {
        // Car paint: dark to white/silver.
        (0.18 + 0.32 * self.rng.f32().powf(0.8)).min(0.55)
    }

    /// Car-like vehicle (Car or Van) at street (u, v).
    pub fn car(&mut self, class: Class, u: f32, v: f32, yaw: f32) -> bool {
        let rng = &mut *self.rng;
        let (l, w, h) = match class {
            Class::Van => (rng.range(4.4, 5.8), rng.range(1.8, 2.05), rng.range(1.9, 2.5)),
            _ => {
                (rng.range(3.6, 4.7) + 0.2 * rng.normal().clamp(-1.0, 1.0), rng.range(1.55, 1.85), rng.range(1.38, 1.7))
            }
        };
        let Some(a) = self.actor(class, u, v, yaw, l, w, h) else { return false };
        let paint = self.paint();
        let tire = 0.05;
        let wx = l / 2.0 - 0.75;
        for sx in [-1.0, 1.0] {
            for sy in [-1.0, 1.0] {
                self.part(a, sx * wx, sy * (w / 2.0 - 0.13), 0.64, 0.24, 0.0, 0.62, tire, Mat::Diffuse);
            }
        }
        // Body (1 cm short of the ends, where plates and lights sit), then the cabin.
        let bz = if class == Class::Van { 0.45 * h } else { 0.56 * h };
        self.part(a, 0.0, 0.0, l - 0.02, w, 0.3, bz, paint, Mat::Diffuse);
        for sx in [-1.0, 1.0] {
            self.part(a, sx * (l / 2.0 - 0.01), 0.0, 0.02, 0.52, 0.4, 0.52, 0.95, Mat::Retro);
            // Lights near the corners.
            for sy in [-1.0, 1.0] {
                self.part(
                    a,
                    sx * (l / 2.0 - 0.012),
                    sy * (w / 2.0 - 0.2),
                    0.024,
                    0.25,
                    bz - 0.2,
                    bz - 0.05,
                    0.75,
                    Mat::Retro,
                );
            }
        }
        match class {
            Class::Van => {
                let cl = 0.82 * l;
                self.part(a, -(l - cl) / 2.0, 0.0, cl, w - 0.04, bz, h - 0.05, paint, Mat::Diffuse);
                self.part(a, -(l - cl) / 2.0 + cl / 2.0 - 0.1, 0.0, 0.2, w - 0.12, bz + 0.1, h - 0.2, 0.05, Mat::Glass);
                self.part(a, -(l - cl) / 2.0, 0.0, cl - 0.05, w - 0.1, h - 0.05, h, paint, Mat::Diffuse);
            }
            _ => {
                let cl = self.rng.range(0.45, 0.58) * l;
                let off = -self.rng.range(0.0, 0.1) * l;
                self.part(a, off, 0.0, cl, w - 0.14, bz, h - 0.06, 0.06, Mat::Glass);
                self.part(a, off, 0.0, cl - 0.25, w - 0.2, h - 0.06, h, paint, Mat::Diffuse);
            }
        }
        true
    }

    /// A truck: cab + cargo box.
    pub fn truck(&mut self, u: f32, v: f32, yaw: f32) -> bool {
        let l = self.rng.range(6.0, 11.0);
        let w = self.rng.range(2.3, 2.6);
        let h = self.rng.range(2.8, 3.7);
        let Some(a) = self.actor(Class::Truck, u, v, yaw, l, w, h) else { return false };
        let paint = self.paint();
        let cargo = self.rng.range(0.2, 0.5);
        let cab = 2.2;
        for k in 0..3 {
            let x = l / 2.0 - 1.0 - k as f32 * (l - 2.0) / 2.0;
            for sy in [-1.0, 1.0] {
                self.part(a, x, sy * (w / 2.0 - 0.16), 1.0, 0.3, 0.0, 1.0, 0.05, Mat::Diffuse);
            }
        }
        self.part(a, l / 2.0 - cab / 2.0, 0.0, cab, w - 0.05, 0.5, 0.62 * h, paint, Mat::Diffuse);
        self.part(a, l / 2.0 - cab / 2.0 - 0.1, 0.0, cab - 0.2, w - 0.1, 0.62 * h, 0.85 * h, 0.06, Mat::Glass);
        self.part(a, -cab / 2.0 + 0.1, 0.0, l - cab - 0.2, w, 0.9, h, cargo, Mat::Diffuse);
        self.part(a, -l / 2.0 + 0.01, 0.0, 0.02, 0.52, 0.55, 0.67, 0.95, Mat::Retro);
        true
    }

    fn clothing(&mut self) -> f32 {
        self.rng.range(0.1, 0.5)
    }

    /// A standing pedestrian.
    pub fn pedestrian(&mut self, u: f32, v: f32, yaw: f32) -> bool {
        let h = (1.72 + 0.1 * self.rng.normal()).clamp(1.45, 1.98);
        let w = self.rng.range(0.5, 0.7);
        let stride = self.rng.range(0.0, 0.55);
        let l = (0.35 + stride).max(0.45) + self.rng.range(0.0, 0.2);
        let Some(a) = self.actor(Class::Pedestrian, u, v, yaw, l, w, h) else { return false };
        let (top, bottom, skin) = (self.clothing(), self.clothing(), self.rng.range(0.25, 0.4));
        let leg = 0.14;
        let step = (l - 0.35).clamp(0.0, stride) / 2.0;
        self.part(a, step, 0.1, leg, leg, 0.0, 0.48 * h, bottom, Mat::Diffuse);
        self.part(a, -step, -0.1, leg, leg, 0.0, 0.48 * h, bottom, Mat::Diffuse);
        self.part(a, 0.0, 0.0, 0.26, 0.8 * w - 0.16, 0.48 * h, 0.82 * h, top, Mat::Diffuse);
        let arm = self.rng.range(0.0, 0.15);
        for sy in [-1.0, 1.0] {
            self.part(a, sy * arm, sy * (w / 2.0 - 0.055), 0.1, 0.1, 0.45 * h, 0.8 * h, top, Mat::Diffuse);
        }
        self.part(a, 0.0, 0.0, 0.22, 0.18, 0.86 * h, h, skin, Mat::Diffuse);
        true
    }

    /// A person sitting (on a bench, a step, a café chair) facing `yaw`.
    pub fn sitting(&mut self, u: f32, v: f32, yaw: f32) -> bool {
        let h = self.rng.range(1.1, 1.35);
        let w = self.rng.range(0.5, 0.65);
        let l = self.rng.range(0.75, 1.0);
        let Some(a) = self.actor(Class::PersonSitting, u, v, yaw, l, w, h) else { return false };
        let (top, bottom) = (self.clothing(), self.clothing());
        self.part(a, l / 2.0 - 0.1, 0.0, 0.16, w - 0.2, 0.0, 0.45, bottom, Mat::Diffuse);
        self.part(a, 0.05, 0.0, l / 2.0, w - 0.2, 0.4, 0.56, bottom, Mat::Diffuse);
        self.part(a, -l / 2.0 + 0.2, 0.0, 0.3, w - 0.05, 0.5, h - 0.24, top, Mat::Diffuse);
        self.part(a, -l / 2.0 + 0.2, 0.0, 0.2, 0.18, h - 0.24, h, 0.3, Mat::Diffuse);
        true
    }

    /// A cyclist: bike (wheels, frame) and rider.
    pub fn cyclist(&mut self, u: f32, v: f32, yaw: f32) -> bool {
        let l = self.rng.range(1.55, 1.9);
        let w = self.rng.range(0.5, 0.7);
        let h = self.rng.range(1.55, 1.85);
        let Some(a) = self.actor(Class::Cyclist, u, v, yaw, l, w, h) else { return false };
        let (top, bottom, metal) = (self.clothing(), self.clothing(), self.rng.range(0.2, 0.6));
        let r = 0.34;
        for sx in [-1.0, 1.0] {
            self.part(a, sx * (l / 2.0 - r), 0.0, 2.0 * r, 0.05, 0.0, 2.0 * r, 0.12, Mat::Diffuse);
        }
        self.part(a, 0.0, 0.0, l - 4.0 * r + 0.5, 0.05, 0.35, 0.75, metal, Mat::Diffuse);
        self.part(a, -l / 2.0 + 0.02, 0.0, 0.03, 0.06, 0.75, 0.8, 0.95, Mat::Retro);
        self.part(a, l / 2.0 - r - 0.05, 0.0, 0.08, w, 0.95, 1.0, metal, Mat::Diffuse);
        for sy in [-1.0, 1.0] {
            self.part(a, -0.05, sy * 0.11, 0.16, 0.12, 0.3, 0.9, bottom, Mat::Diffuse);
        }
        self.part(a, -0.05, 0.0, 0.3, 0.36, 0.88, 0.62 * h + 0.2, top, Mat::Diffuse);
        self.part(a, 0.15, 0.0, 0.3, 0.38, 0.62 * h + 0.2, h - 0.25, top, Mat::Diffuse);
        self.part(a, 0.3, 0.0, 0.22, 0.19, h - 0.24, h, 0.3, Mat::Diffuse);
        true
    }

    /// A tree: trunk and a rough crown of boxes.
    pub fn tree(&mut self, u: f32, v: f32) {
        if !self.free(u, v, 0.4) {
            return;
        }
        self.take(u, v, 0.4);
        let trunk_h = self.rng.range(1.8, 3.2);
        let t = self.rng.range(0.2, 0.4);
        let (yaw, refl) = (self.rng.range(0.0, 1.5), self.rng.range(0.2, 0.35));
        self.street_box(u, v, yaw, t, t, 0.0, trunk_h + 0.5, refl, Mat::Diffuse);
        let cr = self.rng.range(1.2, 3.0);
        let n = 5 + self.rng.below(8);
        for _ in 0..n {
            let du = self.rng.range(-cr, cr);
            let dv = self.rng.range(-cr, cr);
            let dz = self.rng.range(0.0, 2.0 * cr);
            let s = self.rng.range(0.6, 1.4) * cr * 0.6;
            let refl = self.rng.range(0.15, 0.35);
            let yaw = self.rng.range(0.0, 1.6);
            self.street_box(
                u + du,
                v + dv,
                yaw,
                s,
                s,
                trunk_h + dz - s / 2.0,
                trunk_h + dz + s / 2.0,
                refl,
                Mat::Foliage,
            );
        }
    }

    /// A bush or hedge section.
    pub fn bush(&mut self, u: f32, v: f32, size: f32) {
        let n = 2 + self.rng.below(4);
        for _ in 0..n {
            let s = self.rng.range(0.5, 1.0) * size;
            let du = self.rng.range(-size, size);
            let dv = self.rng.range(-size, size) * 0.5;
            let h = self.rng.range(0.4, 1.2) * size.max(0.8);
            let yaw = self.rng.range(0.0, 1.6);
            let refl = self.rng.range(0.12, 0.32);
            self.street_box(u + du, v + dv, yaw, s, s, 0.0, h, refl, Mat::Foliage);
        }
    }

    /// A pole (street light or sign post), with a retroreflective sign on some.
    pub fn pole(&mut self, u: f32, v: f32, side: f32) {
        if !self.free(u, v, 0.3) {
            return;
        }
        self.take(u, v, 0.3);
        if self.rng.chance(0.45) {
            let h = self.rng.range(2.4, 3.2);
            self.street_box(u, v, 0.0, 0.07, 0.07, 0.0, h, 0.3, Mat::Diffuse);
            let sz = self.rng.range(0.5, 0.8);
            // Faces the traffic of its side.
            let yaw = if side < 0.0 { 0.0 } else { PI };
            let refl = self.rng.range(0.85, 0.99);
            self.street_box(u + 0.05, v, yaw, 0.03, sz, h - sz, h, refl, Mat::Retro);
        } else {
            let h = self.rng.range(5.5, 9.0);
            let refl = self.rng.range(0.25, 0.45);
            self.street_box(u, v, 0.0, 0.22, 0.22, 0.0, h, refl, Mat::Diffuse);
            self.street_box(u, v - side * 0.9, 0.0, 0.15, 1.8, h - 0.2, h, refl, Mat::Diffuse);
        }
    }
}
