DROP TABLE early_statuses;
DROP TABLE webhook_receipts;
