-- Issue #21: where each site is (WGS 84 degrees, from `[[sites]] lat/lon`), for the
-- console's map. NULL when the config does not say.
ALTER TABLE sites ADD COLUMN lat double precision CHECK (lat BETWEEN -90 AND 90);
ALTER TABLE sites ADD COLUMN lon double precision CHECK (lon BETWEEN -180 AND 180);
