-- One server, one database per tool: MLflow's backend store, Prefect's database, and the
-- prediction log of the services (levels 1 and 2).
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
CREATE DATABASE predictions;
