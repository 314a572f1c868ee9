//! redfish-scraper
