-- Every key process names why it is key (issue 15), whichever way it was registered: a key
-- process registered before the reason was required gets a reason that says so, so that its
-- enterprise's registry still exports and imports. Its history keeps the same words.
UPDATE process_step SET key_reason = 'not stated when registered'
WHERE is_key AND btrim(key_reason) = '';
UPDATE process_history SET key_reason = 'not stated when registered'
WHERE is_key AND btrim(key_reason) = '';
