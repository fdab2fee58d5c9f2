UPDATE messages SET status = 'cancelled' WHERE status = 'scheduled';
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql, 'CHECK (status IN (''scheduled'', ''queued'', ''sending''',
                          'CHECK (status IN (''queued'', ''sending''')
 WHERE type = 'table' AND name = 'messages';
DROP INDEX messages_scheduled;
PRAGMA writable_schema = RESET;
