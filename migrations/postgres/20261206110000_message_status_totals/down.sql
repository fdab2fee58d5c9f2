DROP TRIGGER message_status_totals_insert ON message_counts;
DROP TRIGGER message_status_totals_update ON message_counts;
DROP TRIGGER message_status_totals_delete ON message_counts;
DROP FUNCTION message_status_totals_add();
DROP TABLE message_status_totals;
