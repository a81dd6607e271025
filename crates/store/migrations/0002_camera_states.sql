-- Issue #4: two more camera states. `stalled`: connected but nothing arrived for the
-- stall timeout (a restart follows). `degraded`: frames arrive but a health check
-- fails (frozen or dark picture, low fps, decode errors); the reason says which.
ALTER TABLE camera_status DROP CONSTRAINT camera_status_state_check;
ALTER TABLE camera_status ADD CONSTRAINT camera_status_state_check
    CHECK (state IN ('starting', 'streaming', 'backing_off', 'stopped', 'stalled', 'degraded'));
