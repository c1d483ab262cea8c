-- Dead letters have a retention (PLANTWIRE_DEAD_LETTER_RETENTION_DAYS): find the old ones fast.
CREATE INDEX dead_letter_received ON dead_letter (received_at);
